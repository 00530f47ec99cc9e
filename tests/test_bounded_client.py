"""swf.BoundedClient: every call of caravanctl (and the standalone pollers' registration) ends within a budget.

Against ScriptedEndpoint (tests/endpoints.py), a tiny endpoint on 127.0.0.1:
each attempt is one request on the wire, so the retries can be counted.
"""

from __future__ import annotations

import time

import botocore.exceptions
import pytest
from endpoints import ScriptedEndpoint

from caravand import swf
from caravand.swf import BoundedClient, CaravanError, SWFError


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(swf, "BOUNDED_BACKOFF_BASE", 0.0)


def bounded(server, budget: float = swf.CALL_BUDGET, **kwargs) -> BoundedClient:
    return BoundedClient(swf.Clients(swf.Endpoint(endpoint_url=server.url, region="us-east-1")), budget, **kwargs)


def test_a_passing_call_is_one_request():
    with ScriptedEndpoint((200, {"domainInfos": []})) as server:
        assert bounded(server).list_domains(registrationStatus="REGISTERED")["domainInfos"] == []
    assert server.operations() == ["ListDomains"]


def test_what_may_pass_again_is_retried():
    with ScriptedEndpoint("throttle", "500", (200, {"domainInfos": []})) as server:
        assert bounded(server).list_domains(registrationStatus="REGISTERED")["domainInfos"] == []
    assert server.operations() == ["ListDomains"] * 3


def test_it_gives_up_after_its_attempts_with_one_line_that_says_so():
    with ScriptedEndpoint(then="500") as server:
        with pytest.raises(SWFError) as info:
            bounded(server).list_domains(registrationStatus="REGISTERED")
    assert server.operations() == ["ListDomains"] * swf.CALL_MAX_ATTEMPTS
    assert (info.value.operation, info.value.code, info.value.status) == ("ListDomains", "InternalFailure", 500)
    assert str(info.value).startswith("ListDomains failed: InternalFailure: boom (gave up after 3 attempts in ")
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)


def test_what_no_retry_can_fix_is_raised_at_once():
    unknown = (400, {"__type": "com.amazonaws.swf.base.model#UnknownResourceFault", "message": "Unknown domain: X"})
    with ScriptedEndpoint(unknown) as server:
        with pytest.raises(SWFError) as info:
            bounded(server).describe_domain(name="X")
    assert server.operations() == ["DescribeDomain"]
    assert str(info.value) == "DescribeDomain failed: UnknownResourceFault: Unknown domain: X"


def test_an_endpoint_that_never_answers_fails_within_the_budget():
    """The ordinary client would wait 3 x (connect + 20 s read) here."""
    with ScriptedEndpoint(then="hang") as server:
        began = time.monotonic()
        with pytest.raises(SWFError) as info:
            bounded(server, budget=3.0).list_domains(registrationStatus="REGISTERED")
        elapsed = time.monotonic() - began
    assert info.value.code == "ReadTimeoutError"
    assert "gave up after" in str(info.value)
    assert 2.0 < elapsed < 3.0 + 0.5
    # The first attempt (read timeout 2.25 s) left time for a second, shorter one.
    assert server.operations() == ["ListDomains"] * 2


def test_paging_is_by_hand_one_bounded_call_a_page():
    pages = (
        (200, {"domainInfos": [{"name": "A", "status": "REGISTERED"}], "nextPageToken": "p2"}),
        (
            200,
            {"domainInfos": [{"name": "B", "status": "REGISTERED"}]},
        ),
    )
    with ScriptedEndpoint(*pages) as server:
        client = bounded(server)
        assert client.can_paginate("list_domains") is False
        names = [
            d["name"] for d in swf.paginate(client, "list_domains", "domainInfos", registrationStatus="REGISTERED")
        ]
    assert names == ["A", "B"]
    assert [request.body.get("nextPageToken") for request in server.requests] == [None, "p2"]


def test_it_looks_like_a_client_where_caravand_needs_it(monkeypatch):
    client = BoundedClient(swf.Clients(swf.Endpoint(endpoint_url="http://127.0.0.1:9", region="eu-west-1")))
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert swf.api_name(client, "list_open_workflow_executions") == "ListOpenWorkflowExecutions"
    with pytest.raises(AttributeError):
        client.no_such_operation  # noqa: B018
    # Errors are CaravanError, so swf.call passes them through as they are.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SWF", "http://127.0.0.1:9")
    with pytest.raises(CaravanError, match="EndpointConnectionError"):
        swf.call(client, "list_domains", registrationStatus="REGISTERED")
