"""Registration as the master's registrar does it: once per pool, throttling waited out, never fatal by itself."""

from __future__ import annotations

import types

import pytest
from botocore.stub import Stubber
from helpers import FakeClock
from stubs import offline_client

from caravand import registration, swf
from caravand.examples.demo import Demo


def stubbed():
    client = offline_client()
    stub = Stubber(client)
    stub.activate()
    return client, stub


def pool(register=True):
    factory = types.SimpleNamespace(
        register=register,
        register_types=lambda client, domain: registration.register_types(client, domain, "workflow", [Demo]),
    )
    return types.SimpleNamespace(name="demo", domain="D", factory=factory)


def test_throttling_during_a_fleet_deploy_is_waited_out():
    """Item 9: a fleet deploy is throttled by SWF; the registrar retries with jittered backoff, never fails."""
    client, stub = stubbed()
    for _ in range(3):
        stub.add_client_error("register_domain", "ThrottlingException", http_status_code=400)
    stub.add_response("register_domain", {})
    stub.add_client_error("register_workflow_type", "ThrottlingException", http_status_code=400)
    stub.add_client_error("register_workflow_type", "InternalFailure", http_status_code=500)
    stub.add_response("register_workflow_type", {})
    fake = FakeClock()
    registration.register_pool(
        client, pool(), register_domain_too=True, deadline=fake.now + 100, clock=fake, sleep=fake.sleep,
        rng=lambda: 1.0,
    )  # fmt: skip
    assert fake.sleeps == [0.5, 1.0, 2.0, 0.5, 1.0]  # each step's own backoff, capped, jittered by rng
    stub.assert_no_pending_responses()


def test_retries_stop_at_the_deadline():
    client, stub = stubbed()
    for _ in range(10):
        stub.add_client_error("register_workflow_type", "ThrottlingException", http_status_code=400)
    fake = FakeClock()
    with pytest.raises(swf.SWFError) as info:
        registration.register_pool(
            client, pool(), register_domain_too=False, deadline=fake.now + 3, clock=fake, sleep=fake.sleep,
            rng=lambda: 1.0,
        )  # fmt: skip
    assert info.value.code == "ThrottlingException"
    assert sum(fake.sleeps) < 3


def test_an_error_no_retry_fixes_is_raised_at_once():
    client, stub = stubbed()
    stub.add_client_error("register_workflow_type", "UnknownResourceFault", http_status_code=400)
    fake = FakeClock()
    with pytest.raises(swf.SWFError):
        registration.register_pool(
            client, pool(), register_domain_too=False, deadline=fake.now + 100, clock=fake, sleep=fake.sleep
        )
    assert fake.sleeps == []


def test_a_domain_that_exists_though_registering_it_was_refused_lets_the_types_go_on():
    """A role without swf:RegisterDomain on an existing domain: the types must still be registered."""
    client, stub = stubbed()
    stub.add_client_error("register_domain", "AccessDeniedException", http_status_code=400)
    stub.add_response(
        "describe_domain",
        {
            "domainInfo": {"name": "D", "status": "REGISTERED"},
            "configuration": {"workflowExecutionRetentionPeriodInDays": "1"},
        },
    )
    stub.add_response("register_workflow_type", {})
    fake = FakeClock()
    registration.register_pool(
        client, pool(), register_domain_too=True, deadline=fake.now + 100, clock=fake, sleep=fake.sleep
    )
    stub.assert_no_pending_responses()


def test_a_missing_domain_that_cannot_be_registered_raises_the_registration_error():
    client, stub = stubbed()
    stub.add_client_error("register_domain", "AccessDeniedException", http_status_code=400)
    stub.add_client_error("describe_domain", "UnknownResourceFault", http_status_code=400)
    with pytest.raises(swf.SWFError) as info:
        registration.register_domain(client, "D")
    assert info.value.code == "AccessDeniedException"
