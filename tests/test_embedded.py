"""The embedded local SWF endpoint (caravand.embedded.EmbeddedEndpoint) as a child process."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

import boto3
import pytest
from helpers import wait_for

from caravand.embedded import EmbeddedEndpoint, PortUnavailable
from caravand.swf import ConfigError

pytestmark = pytest.mark.e2e


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def embedded():
    """An EmbeddedEndpoint on a free port, stopped (by PID) whatever the test did."""
    endpoint = EmbeddedEndpoint(port=0)
    try:
        yield endpoint
    finally:
        endpoint.stop()


def test_start_answers_reset_and_stop(embedded):
    url = embedded.start()
    assert url == embedded.url
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    pid = embedded.pid
    assert pid and not pid_gone(pid)

    with urllib.request.urlopen(f"{url}/moto-api/config", timeout=5) as response:
        assert isinstance(json.load(response), dict)

    client = boto3.client("swf", endpoint_url=url, region_name="us-east-1")
    client.register_domain(name="Before", workflowExecutionRetentionPeriodInDays="1")
    assert [d["name"] for d in client.list_domains(registrationStatus="REGISTERED")["domainInfos"]] == ["Before"]
    embedded.reset()
    assert client.list_domains(registrationStatus="REGISTERED")["domainInfos"] == []

    assert embedded.stop() == 0
    assert pid_gone(pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/moto-api/config", timeout=2)
    # Stopping twice is harmless.
    assert embedded.stop() == 0


def test_context_manager():
    with EmbeddedEndpoint(port=0) as endpoint:
        pid = endpoint.pid
        with urllib.request.urlopen(f"{endpoint.url}/moto-api/config", timeout=5) as response:
            assert isinstance(json.load(response), dict)
    assert endpoint.process.returncode == 0
    assert pid_gone(pid)


def test_given_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = EmbeddedEndpoint(port=port)
    try:
        assert endpoint.start() == f"http://127.0.0.1:{port}"
    finally:
        endpoint.stop()
    assert pid_gone(endpoint.pid)


def test_port_in_use(embedded):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        taken = EmbeddedEndpoint(port=port)
        try:
            with pytest.raises(PortUnavailable) as info:
                taken.start(timeout=20)
            # 78, as `caravanctl local-endpoint` on a port in use: a setting naming what cannot be had.
            assert info.value.exit_code == 78 and isinstance(info.value, ConfigError)
            # It says why and which setting changes it (it was "failed to start on port N (exit 2)").
            assert str(info.value) == (
                f"embedded SWF endpoint: cannot listen on 127.0.0.1:{port}: address already in use "
                "(another process listens there): set embedded_port in [caravand] to a free port"
            )
            # The child is gone and reaped: nothing left behind.
            assert taken.process.returncode is not None
            assert pid_gone(taken.pid)
        finally:
            taken.stop()


def test_process_title_names_the_endpoint(embedded):
    """`ps | grep 'caravand:'` shows the endpoint beside the master and its children."""
    url = embedded.start()
    with open(f"/proc/{embedded.pid}/cmdline", "rb") as f:
        title = f.read().rstrip(b"\0").decode()
    assert title == f"caravand: endpoint {url.removeprefix('http://')}"
    with open(f"/proc/{embedded.pid}/comm") as f:
        assert f.read().strip() == "caravand: endpo"  # the kernel's 15 characters stay meaningful


def test_a_failure_that_is_not_the_port_says_how_to_see_why(embedded, monkeypatch):
    """A child that dies before listening for another reason: its exit code, and the command that shows why."""
    monkeypatch.setattr(embedded, "python", "/bin/false")
    with pytest.raises(ConfigError) as info:
        embedded.start(timeout=20)
    assert not isinstance(info.value, PortUnavailable)
    assert "failed to start on port 0 (exit 1)" in str(info.value)
    assert "-m caravand.embedded --port 0 --verbose" in str(info.value)


def test_stop_before_start_is_harmless():
    assert EmbeddedEndpoint(port=0).stop() is None


def test_stop_escalates_to_sigkill(embedded, monkeypatch):
    """A child that ignores SIGTERM is killed after the timeout."""
    embedded.start()
    pid = embedded.pid
    monkeypatch.setattr(embedded.process, "terminate", lambda: None)  # as if SIGTERM were ignored
    assert embedded.stop(timeout=0.2) == -9
    wait_for(lambda: pid_gone(pid), timeout=5, message=f"pid {pid} to be gone")


def test_mended_emulator_signals_without_input_and_dates_executions_truly(endpoint):
    """The two moto bugs caravand's embedded endpoint mends, seen over HTTP."""
    import datetime

    client = boto3.client("swf", endpoint_url=endpoint.url, region_name="us-east-1")
    client.register_domain(name="Mend", workflowExecutionRetentionPeriodInDays="1")
    client.register_workflow_type(
        domain="Mend",
        name="W",
        version="1",
        defaultTaskList={"name": "t"},
        defaultTaskStartToCloseTimeout="10",
        defaultExecutionStartToCloseTimeout="60",
        defaultChildPolicy="TERMINATE",
    )
    run_id = client.start_workflow_execution(domain="Mend", workflowId="m", workflowType={"name": "W", "version": "1"})[
        "runId"
    ]
    client.signal_workflow_execution(domain="Mend", workflowId="m", signalName="STOP")  # no input: no HTTP 500
    described = client.describe_workflow_execution(domain="Mend", execution={"workflowId": "m", "runId": run_id})
    started = described["executionInfo"]["startTimestamp"]
    assert abs((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()) < 300
    events = client.get_workflow_execution_history(domain="Mend", execution={"workflowId": "m", "runId": run_id})
    assert [e["eventType"] for e in events["events"]].count("WorkflowExecutionSignaled") == 1
