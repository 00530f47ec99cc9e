"""The SWF client layer (caravand.swf): clients, errors, paging."""

from __future__ import annotations

import functools
import time

import botocore.exceptions
import botocore.retries.standard
import botocore.session
import pytest
from botocore.stub import Stubber
from endpoints import ScriptedEndpoint

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


def test_call_client_retries_and_poll_client_does_not(monkeypatch):
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    with ScriptedEndpoint(then="500") as server:
        with pytest.raises(SWFError) as info:
            swf.call(swf.make_client(server.endpoint()), "list_domains", registrationStatus="REGISTERED")
        assert info.value.code == "InternalFailure"
        assert server.operations() == ["ListDomains"] * 3

        poll_client = swf.make_client(server.endpoint(), poll=True)
        with pytest.raises(SWFError) as info:
            swf.call(poll_client, "poll_for_decision_task", domain="D", taskList={"name": "t"})
    assert info.value.operation == "PollForDecisionTask"
    assert server.operations() == ["ListDomains"] * 3 + ["PollForDecisionTask"]


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


# -- calls that must fit a deadline: status, is_retryable, explicit timeouts, Clients


def test_make_client_explicit_timeouts_and_attempts():
    client = swf.make_client(Endpoint(region="eu-west-1"), connect_timeout=0.5, read_timeout=1.5, max_attempts=1)
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (0.5, 1.5)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    # Only what is given changes: a poll client keeps its long read.
    poll = swf.make_client(Endpoint(region="eu-west-1"), poll=True, connect_timeout=1)
    assert (poll.meta.config.connect_timeout, poll.meta.config.read_timeout) == (1, 70)
    assert poll.meta.config.retries["total_max_attempts"] == 1


def test_swf_error_status_from_the_answer():
    exc = botocore.exceptions.ClientError(
        {"Error": {"Code": "InternalFailure", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
        "RespondActivityTaskCompleted",
    )
    assert swf.translate_error(exc, "RespondActivityTaskCompleted").status == 503
    timeout = botocore.exceptions.ReadTimeoutError(endpoint_url="http://x")
    assert swf.translate_error(timeout, "RecordActivityTaskHeartbeat").status is None
    assert SWFError("Op", "Code", "m").status is None


def client_error(code, status):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (client_error("ThrottlingException", 400), True),
        (client_error("LimitExceededException", 400), True),
        (client_error("LimitExceededFault", 400), True),
        (client_error("InternalFailure", 500), True),
        (client_error("ServiceUnavailable", 503), True),
        (client_error("Whatever", 502), True),
        (client_error("UnknownResourceFault", 400), False),
        (client_error("ValidationException", 400), False),
        (client_error("AccessDeniedException", 400), False),
        (client_error("OperationNotPermittedFault", 400), False),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), True),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), True),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"), True),
        (botocore.exceptions.NoCredentialsError(), False),
        (ValueError("not botocore's"), False),
    ],
)
def test_is_retryable(error, retryable):
    assert swf.is_retryable(error) is retryable
    # The same answer once translated, with its cause and without.
    if isinstance(error, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
        translated = swf.translate_error(error, "Op")
        translated.__cause__ = error
        assert swf.is_retryable(translated) is retryable
        translated.__cause__ = None
        assert swf.is_retryable(translated) is retryable


def test_errors_no_retry_can_fix_are_not_retryable():
    assert not swf.is_retryable(UsageError("bad decision"))
    assert not swf.is_retryable(ConfigError("no credentials"))


@pytest.mark.parametrize("budget", [0, 0.3, 0.75, 1, 1.9, 2, 3.7, 8, 12, 23.9, 24, 100, 1e6])
def test_call_timeouts_fit_the_budget(budget):
    connect, read = swf.call_timeouts(budget)
    assert swf.MIN_CONNECT_TIMEOUT <= connect <= swf.CONNECT_TIMEOUT
    assert swf.MIN_READ_TIMEOUT <= read <= swf.CALL_READ_TIMEOUT
    if budget >= swf.MIN_CONNECT_TIMEOUT + swf.MIN_READ_TIMEOUT:
        assert connect + read <= budget
    if budget >= 24:
        assert (connect, read) == (swf.CONNECT_TIMEOUT, swf.CALL_READ_TIMEOUT)


def test_call_timeouts_take_few_distinct_values():
    pairs = {swf.call_timeouts(budget / 100) for budget in range(0, 10000)}
    assert len(pairs) <= 40  # so the cache of clients stays small


def test_clients_are_cached_per_timeouts():
    clients = swf.Clients(Endpoint(endpoint_url=NOWHERE, region="us-east-1"))
    first = clients.within(8)
    assert clients.within(8.4) is first  # same rounded timeouts
    config = first.meta.config
    assert (config.connect_timeout, config.read_timeout) == swf.call_timeouts(8) == (2.0, 6.0)
    assert config.retries["total_max_attempts"] == 1
    assert clients.within(1) is not first
    assert clients.get(connect_timeout=2.0, read_timeout=6.0) is first
    assert clients.get(connect_timeout=2.0, read_timeout=6.0, max_attempts=3) is not first


def test_a_client_within_a_budget_gives_up_in_time_on_an_endpoint_that_never_answers():
    with ScriptedEndpoint(then="hang") as server:
        client = swf.Clients(server.endpoint()).within(0.8)
        started = time.monotonic()
        with pytest.raises(SWFError) as info:
            swf.call(client, "record_activity_task_heartbeat", taskToken="t")
        elapsed = time.monotonic() - started
    assert info.value.code == "ReadTimeoutError" and swf.is_retryable(info.value)
    assert server.operations() == ["RecordActivityTaskHeartbeat"]  # one attempt
    assert elapsed < 0.8 + 0.3  # read timeout 0.5 s: a default client would wait 3 x 20 s


def test_a_throttled_answer_on_the_wire_is_retryable():
    with ScriptedEndpoint("throttle", "500") as server:
        client = swf.Clients(server.endpoint()).within(4)
        for code, status in (("ThrottlingException", 400), ("InternalFailure", 500)):
            with pytest.raises(SWFError) as info:
                swf.call(client, "respond_activity_task_completed", taskToken="t")
            assert (info.value.code, info.value.status) == (code, status)
            assert swf.is_retryable(info.value)
    assert server.operations() == ["RespondActivityTaskCompleted"] * 2


def test_warm_session_caches_what_a_client_needs_and_opens_no_connection():
    """The master warms it before fork: a connection made here would be shared by every child."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        endpoint = swf.Endpoint(endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}", region="us-east-1")
        session = swf.warm_session(endpoint)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    # What the first client reads besides the model (the endpoint rules: ~45 ms) is in the session's loader.
    cached = [str(key) for key in session._session.get_component("data_loader")._cache]
    assert any("endpoint-rule-set" in key for key in cached) and any("service-2" in key for key in cached)
