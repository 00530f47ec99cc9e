"""The SWF client layer (caravand.swf): clients, errors, paging."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import botocore.exceptions
import botocore.retries.standard
import botocore.session
import pytest
from botocore.stub import Stubber

from caravand import swf
from caravand.swf import ConfigError, Endpoint, SWFError, UsageError

#: A loopback port nothing listens on: a stubbed client never sends, and if
#: one did, it could not leave this machine.
NOWHERE = "http://127.0.0.1:9"


_shared_loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)


@pytest.fixture(autouse=True)
def shared_botocore_loader(monkeypatch):
    """Each test builds fresh sessions; sharing botocore's model loader keeps that fast."""
    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader)


def stubbed_client():
    client = swf.make_client(Endpoint(endpoint_url=NOWHERE, region="us-east-1"))
    return client, Stubber(client)


def domain(name: str) -> dict:
    return {"name": name, "status": "REGISTERED", "arn": f"arn:aws:swf:us-east-1:123456789012:/domain/{name}"}


# -- make_client


def test_call_client_config():
    client = swf.make_client(Endpoint(region="eu-west-1"))
    config = client.meta.config
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == swf.CALL_MAX_ATTEMPTS == 3
    assert config.read_timeout == swf.CALL_READ_TIMEOUT
    assert config.read_timeout < 60
    assert config.connect_timeout == swf.CONNECT_TIMEOUT
    assert client.meta.region_name == "eu-west-1"


def test_poll_client_config():
    client = swf.make_client(Endpoint(region="eu-west-1"), poll=True)
    config = client.meta.config
    # SWF holds a poll up to 60 s: the read must outlast it, and never be retried.
    assert config.read_timeout == 70
    assert config.read_timeout >= 70
    assert config.retries["total_max_attempts"] == 1
    assert config.connect_timeout == swf.CONNECT_TIMEOUT


def test_region_from_the_environment_and_overrides():
    assert swf.make_client(Endpoint()).meta.region_name == "us-east-1"  # AWS_DEFAULT_REGION of conftest
    assert swf.make_client(Endpoint(region="ap-south-1")).meta.region_name == "ap-south-1"


def test_endpoint_url_override_and_env(monkeypatch):
    client = swf.make_client(Endpoint(endpoint_url="http://127.0.0.1:4599"))
    assert client.meta.endpoint_url == "http://127.0.0.1:4599"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SWF", "http://127.0.0.1:4700")
    assert swf.make_client(Endpoint()).meta.endpoint_url == "http://127.0.0.1:4700"
    # An explicit endpoint wins over the environment.
    assert swf.make_client(Endpoint(endpoint_url="http://127.0.0.1:4599")).meta.endpoint_url == "http://127.0.0.1:4599"


def test_no_region_is_a_config_error(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError) as info:
        swf.make_client(Endpoint(endpoint_url=NOWHERE))
    assert info.value.exit_code == 78
    assert "no AWS region" in str(info.value) and "AWS_DEFAULT_REGION" in str(info.value)


def test_embedded_endpoint_gets_a_region_and_dummy_credentials(monkeypatch):
    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    client = swf.make_client(Endpoint(endpoint_url="http://127.0.0.1:4599", embedded=True))
    assert client.meta.region_name == swf.EMBEDDED_REGION == "us-east-1"
    credentials = client._request_signer._credentials
    assert credentials.access_key == swf.EMBEDDED_CREDENTIALS["aws_access_key_id"]
    assert credentials.secret_key == swf.EMBEDDED_CREDENTIALS["aws_secret_access_key"]


def test_embedded_endpoint_keeps_an_explicit_region(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    client = swf.make_client(Endpoint(endpoint_url="http://127.0.0.1:4599", region="eu-west-3", embedded=True))
    assert client.meta.region_name == "eu-west-3"


def test_bad_profile_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        swf.make_client(Endpoint(profile="no-such-profile"))
    assert info.value.exit_code == 78
    assert "no-such-profile" in str(info.value) and "--profile" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_profile_from_aws_profile(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "ghost")
    with pytest.raises(ConfigError, match="ghost"):
        swf.make_client(Endpoint())


def test_profile_from_config_file(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text("[profile dev-profile]\nregion = ca-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert swf.make_client(Endpoint(profile="dev-profile")).meta.region_name == "ca-central-1"


def test_endpoint_with_overrides():
    base = Endpoint(endpoint_url="http://a", region="r1", profile="p", embedded=True)
    changed = base.with_overrides(endpoint_url=None, region="r2", profile=None)
    assert changed == Endpoint(endpoint_url="http://a", region="r2", profile="p", embedded=True)
    assert base.region == "r1"


# -- retries, seen on the wire


class FailingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with an HTTP 500, counting them."""

    requests = 0

    def do_POST(self):
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"__type": "InternalFailure", "message": "boom"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_server(monkeypatch):
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    handler = type("Handler", (FailingHandler,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_call_client_retries_and_poll_client_does_not(failing_server):
    url, handler = failing_server
    endpoint = Endpoint(endpoint_url=url, region="us-east-1")
    with pytest.raises(SWFError) as info:
        swf.call(swf.make_client(endpoint), "list_domains", registrationStatus="REGISTERED")
    assert info.value.code == "InternalFailure"
    assert handler.requests == 3

    handler.requests = 0
    poll_client = swf.make_client(endpoint, poll=True)
    with pytest.raises(SWFError) as info:
        swf.call(poll_client, "poll_for_decision_task", domain="D", taskList={"name": "t"})
    assert info.value.operation == "PollForDecisionTask"
    assert handler.requests == 1


# -- translate_error


def test_translate_client_error():
    exc = botocore.exceptions.ClientError(
        {"Error": {"Code": "UnknownResourceFault", "Message": "Unknown domain: Nope"}}, "DescribeDomain"
    )
    error = swf.translate_error(exc, "DescribeDomain")
    assert isinstance(error, SWFError)
    assert error.exit_code == 1
    assert (error.operation, error.code, error.message) == (
        "DescribeDomain",
        "UnknownResourceFault",
        "Unknown domain: Nope",
    )
    assert str(error) == "DescribeDomain failed: UnknownResourceFault: Unknown domain: Nope"
    assert swf.error_code(exc) == "UnknownResourceFault"
    assert swf.error_code(error) == "UnknownResourceFault"
    assert swf.error_code(ValueError()) is None


def test_translate_client_error_html_page_becomes_one_short_line():
    page = "<html>\n<head><title>500 Internal Server Error</title></head>\n<body>\n<h1>Oops</h1>\n" + "x" * 500
    exc = botocore.exceptions.ClientError({"Error": {"Code": "500", "Message": page}}, "SignalWorkflowExecution")
    text = str(swf.translate_error(exc, "SignalWorkflowExecution"))
    assert "\n" not in text and "<" not in text
    assert text.startswith("SignalWorkflowExecution failed: 500: 500 Internal Server Error Oops x")
    assert text.endswith("...")
    assert len(text) < 400


def test_translate_client_error_without_details():
    error = swf.translate_error(botocore.exceptions.ClientError({}, "ListDomains"), "ListDomains")
    assert str(error) == "ListDomains failed: Unknown: no message"


def test_translate_no_credentials():
    error = swf.translate_error(botocore.exceptions.NoCredentialsError(), "ListDomains")
    assert isinstance(error, ConfigError) and error.exit_code == 78
    assert "ListDomains" in str(error)
    assert "AWS_ACCESS_KEY_ID" in str(error) and "AWS_SECRET_ACCESS_KEY" in str(error)


def test_translate_partial_credentials_and_no_region():
    partial = botocore.exceptions.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY")
    error = swf.translate_error(partial, "ListDomains")
    assert isinstance(error, ConfigError) and "AWS_ACCESS_KEY_ID" in str(error)
    error = swf.translate_error(botocore.exceptions.NoRegionError(), "ListDomains")
    assert isinstance(error, ConfigError) and "AWS_DEFAULT_REGION" in str(error)


def test_translate_endpoint_connection_error():
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")
    error = swf.translate_error(exc, "ListDomains")
    assert isinstance(error, SWFError) and error.exit_code == 1
    assert error.code == "EndpointConnectionError"
    assert str(error) == "ListDomains failed: EndpointConnectionError: cannot reach http://127.0.0.1:9/"


def test_translate_timeouts():
    exc = botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:9/")
    error = swf.translate_error(exc, "PollForActivityTask")
    assert isinstance(error, SWFError) and error.code == "ReadTimeoutError"
    assert "http://127.0.0.1:9/" in str(error)


def test_translate_param_validation_error_is_usage_on_one_line():
    exc = botocore.exceptions.ParamValidationError(
        report='Missing required parameter in input: "name"\nUnknown parameter in input: "nmae"'
    )
    error = swf.translate_error(exc, "RegisterDomain")
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert "\n" not in str(error)
    assert str(error).startswith("RegisterDomain: ")
    assert '"name"' in str(error) and '"nmae"' in str(error)


def test_translate_refuses_foreign_exceptions():
    with pytest.raises(TypeError):
        swf.translate_error(ValueError("x"), "ListDomains")


def test_call_translates_param_validation():
    client, _ = stubbed_client()
    with pytest.raises(UsageError, match="DescribeDomain"):
        swf.call(client, "describe_domain")


# -- call and paginate


def test_call_drops_none_params():
    client, stubber = stubbed_client()
    stubber.add_response(
        "signal_workflow_execution",
        {},
        {"domain": "D", "workflowId": "1", "signalName": "PRINT"},
    )
    with stubber:
        result = swf.call(
            client, "signal_workflow_execution", domain="D", workflowId="1", runId=None, signalName="PRINT", input=None
        )
    assert result == {}
    stubber.assert_no_pending_responses()


def test_call_translates_client_errors():
    client, stubber = stubbed_client()
    stubber.add_client_error(
        "describe_domain",
        service_error_code="UnknownResourceFault",
        service_message="Unknown domain: Nope",
        expected_params={"name": "Nope"},
    )
    with stubber, pytest.raises(SWFError) as info:
        swf.call(client, "describe_domain", name="Nope")
    assert str(info.value) == "DescribeDomain failed: UnknownResourceFault: Unknown domain: Nope"


def three_pages(stubber, status="REGISTERED"):
    stubber.add_response(
        "list_domains",
        {"domainInfos": [domain("a"), domain("b")], "nextPageToken": "page2"},
        {"registrationStatus": status},
    )
    stubber.add_response(
        "list_domains",
        {"domainInfos": [domain("c")], "nextPageToken": "page3"},
        {"registrationStatus": status, "nextPageToken": "page2"},
    )
    stubber.add_response(
        "list_domains",
        {"domainInfos": [domain("d"), domain("e")]},
        {"registrationStatus": status, "nextPageToken": "page3"},
    )


def test_paginate_follows_next_page_token():
    client, stubber = stubbed_client()
    assert client.can_paginate("list_domains")
    three_pages(stubber)
    with stubber:
        names = [
            d["name"] for d in swf.paginate(client, "list_domains", "domainInfos", registrationStatus="REGISTERED")
        ]
    assert names == ["a", "b", "c", "d", "e"]
    stubber.assert_no_pending_responses()


def test_paginate_without_a_botocore_paginator(monkeypatch):
    """The hand-written loop, for an operation botocore has no paginator for."""
    client, stubber = stubbed_client()
    monkeypatch.setattr(client, "can_paginate", lambda method: False)
    three_pages(stubber, status="DEPRECATED")
    with stubber:
        items = list(
            swf.paginate(client, "list_domains", "domainInfos", registrationStatus="DEPRECATED", maximumPageSize=None)
        )
    assert [d["name"] for d in items] == ["a", "b", "c", "d", "e"]
    stubber.assert_no_pending_responses()


def test_paginate_history_pages():
    client, stubber = stubbed_client()
    execution = {"workflowId": "1", "runId": "r"}
    event = {"eventTimestamp": 0, "eventType": "WorkflowExecutionSignaled", "eventId": 0}
    stubber.add_response(
        "get_workflow_execution_history",
        {"events": [dict(event, eventId=1), dict(event, eventId=2)], "nextPageToken": "t"},
        {"domain": "D", "execution": execution},
    )
    stubber.add_response(
        "get_workflow_execution_history",
        {"events": [dict(event, eventId=3)]},
        {"domain": "D", "execution": execution, "nextPageToken": "t"},
    )
    with stubber:
        events = list(swf.paginate(client, "get_workflow_execution_history", "events", domain="D", execution=execution))
    assert [e["eventId"] for e in events] == [1, 2, 3]


def test_paginate_translates_errors_mid_way():
    client, stubber = stubbed_client()
    stubber.add_response(
        "list_domains", {"domainInfos": [domain("a")], "nextPageToken": "p2"}, {"registrationStatus": "REGISTERED"}
    )
    stubber.add_client_error("list_domains", service_error_code="ThrottlingException", service_message="slow down")
    with stubber, pytest.raises(SWFError) as info:
        list(swf.paginate(client, "list_domains", "domainInfos", registrationStatus="REGISTERED"))
    assert info.value.operation == "ListDomains"
    assert info.value.code == "ThrottlingException"


def test_api_name():
    client, _ = stubbed_client()
    assert swf.api_name(client, "list_open_workflow_executions") == "ListOpenWorkflowExecutions"
    assert swf.api_name(client, "not_an_operation") == "not_an_operation"


def test_with_in_process_moto(swf_client):
    """The fixture's client really reaches moto, through call and paginate."""
    swf.call(swf_client, "register_domain", name="D1", workflowExecutionRetentionPeriodInDays="1", description=None)
    swf.call(swf_client, "register_domain", name="D2", workflowExecutionRetentionPeriodInDays="1")
    names = {
        d["name"] for d in swf.paginate(swf_client, "list_domains", "domainInfos", registrationStatus="REGISTERED")
    }
    assert names == {"D1", "D2"}
    with pytest.raises(SWFError) as info:
        swf.call(swf_client, "register_domain", name="D1", workflowExecutionRetentionPeriodInDays="1")
    assert info.value.code == "DomainAlreadyExistsFault"
