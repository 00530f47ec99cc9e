"""The embedded local SWF endpoint (caravand.embedded.EmbeddedEndpoint) as a child process."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
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


# -- a faithful SWF (caravand.emulator): each test fails on stock moto 5.2.5


@pytest.fixture
def held_endpoint():
    """An endpoint that holds an empty poll 30 s, as SWF holds one 60 s; stopped by PID whatever the test did."""
    endpoint = EmbeddedEndpoint(port=0, poll_hold=30)
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def polls_held(endpoint, where: str, count: int) -> None:
    """Wait until the endpoint holds ``count`` polls on ``where`` (``DOMAIN/kind/LIST``)."""
    wait_for(lambda: endpoint.held_polls().get(where, 0) >= count, timeout=10, interval=0.01,
             message=f"{count} polls held on {where}")  # fmt: skip


def swf_client(url: str, read_timeout: float = 40):
    from botocore.config import Config

    config = Config(read_timeout=read_timeout, retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("swf", endpoint_url=url, region_name="us-east-1", config=config)


def register(client, domain: str = "Faithful") -> None:
    client.register_domain(name=domain, workflowExecutionRetentionPeriodInDays="1")
    client.register_workflow_type(domain=domain, name="W", version="1", defaultTaskList={"name": "decide"},
                                  defaultTaskStartToCloseTimeout="30", defaultExecutionStartToCloseTimeout="600",
                                  defaultChildPolicy="TERMINATE")  # fmt: skip
    client.register_activity_type(domain=domain, name="A", version="1", defaultTaskList={"name": "work"},
                                  defaultTaskScheduleToStartTimeout="60", defaultTaskScheduleToCloseTimeout="120",
                                  defaultTaskStartToCloseTimeout="60", defaultTaskHeartbeatTimeout="NONE")  # fmt: skip


def start_execution(client, workflow_id: str = "w", domain: str = "Faithful", **options) -> dict:
    run_id = client.start_workflow_execution(domain=domain, workflowId=workflow_id,
                                             workflowType={"name": "W", "version": "1"}, **options)["runId"]  # fmt: skip
    return {"workflowId": workflow_id, "runId": run_id}


def decide(client, decisions, domain: str = "Faithful") -> dict:
    task = client.poll_for_decision_task(domain=domain, taskList={"name": "decide"}, identity="pytest")
    assert task.get("taskToken"), "a decision task was due"
    client.respond_decision_task_completed(taskToken=task["taskToken"], decisions=decisions)
    return task


def schedule_decision(activity_id: str, **timeouts: str) -> dict:
    attributes = {"activityId": activity_id, "activityType": {"name": "A", "version": "1"}, **timeouts}
    return {"decisionType": "ScheduleActivityTask", "scheduleActivityTaskDecisionAttributes": attributes}


def event_types(client, execution, domain: str = "Faithful") -> list[str]:
    events = client.get_workflow_execution_history(domain=domain, execution=execution)["events"]
    return [event["eventType"] for event in events]


def test_a_task_scheduled_during_a_hold_reaches_the_waiting_poll_at_once(held_endpoint):
    """SWF answers a held poll when a task comes; moto slept 1 s and answered empty (about 510 ms late)."""
    client = swf_client(held_endpoint.url)
    register(client)
    start_execution(client)
    decide(client, [])
    poller = swf_client(held_endpoint.url)
    outcome: dict = {}

    def poll():
        outcome["started"] = time.monotonic()
        outcome["task"] = poller.poll_for_activity_task(domain="Faithful", taskList={"name": "work"})
        outcome["answered"] = time.monotonic()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    polls_held(held_endpoint, "Faithful/activity/work", 1)
    client.signal_workflow_execution(domain="Faithful", workflowId="w", signalName="go")
    decide(client, [schedule_decision("a1")])
    scheduled = time.monotonic()
    thread.join(timeout=10)
    assert outcome["task"].get("activityId") == "a1"
    assert outcome["answered"] - scheduled < 0.5  # of a 30 s hold (moto answered empty, a second after it came)


def test_four_concurrent_pollers_get_each_task_once(endpoint):
    """moto handed some of 200 decision and activity tasks to two pollers (3 and 1 to 3 here); SWF, to one."""
    client = swf_client(endpoint.url)
    register(client)
    for i in range(200):  # 100 duplicated none in one run of 2 on moto: 200 duplicated some in 3 of 3
        start_execution(client, f"w{i}")

    def drain(kind: str, task_list: str) -> list[str]:
        tokens: list[str] = []

        def poller():
            mine = swf_client(endpoint.url)
            poll = getattr(mine, f"poll_for_{kind}_task")
            while (task := poll(domain="Faithful", taskList={"name": task_list})).get("taskToken"):
                tokens.append(task["taskToken"])
                if kind == "decision":
                    decisions = [schedule_decision("a")]
                    mine.respond_decision_task_completed(taskToken=task["taskToken"], decisions=decisions)

        threads = [threading.Thread(target=poller, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        return tokens

    decisions = drain("decision", "decide")
    assert len(decisions) == 200 and len(set(decisions)) == 200
    activities = drain("activity", "work")
    assert len(activities) == 200 and len(set(activities)) == 200


def test_a_start_and_two_signals_before_any_poll_make_one_decision_task(endpoint):
    """SWF: 1 DecisionTaskScheduled; moto: 3 (one per event)."""
    client = swf_client(endpoint.url)
    register(client)
    execution = start_execution(client)
    for name in ("a", "b"):
        client.signal_workflow_execution(domain="Faithful", workflowId="w", signalName=name)
    assert event_types(client, execution).count("DecisionTaskScheduled") == 1
    described = client.describe_workflow_execution(domain="Faithful", execution=execution)
    assert described["openCounts"]["openDecisionTasks"] == 1


@pytest.mark.parametrize(
    ("kind", "timeouts", "poll_after"),
    [
        ("SCHEDULE_TO_START", {"scheduleToStartTimeout": "1"}, None),
        ("SCHEDULE_TO_CLOSE", {"scheduleToCloseTimeout": "1", "scheduleToStartTimeout": "30"}, None),
        ("START_TO_CLOSE", {"startToCloseTimeout": "1"}, 0.0),
        # Polled 1.5 s after scheduling: moto's heartbeat clock, run from scheduling, timed it out unstarted.
        ("HEARTBEAT", {"heartbeatTimeout": "1", "startToCloseTimeout": "30"}, 1.5),
    ],
)
def test_each_activity_timeout_is_enforced(endpoint, kind, timeouts, poll_after):
    """The four activity timeouts, on the endpoint's own tick (moto enforced HEARTBEAT only, on calls)."""
    client = swf_client(endpoint.url)
    register(client)
    execution = start_execution(client)
    decide(client, [schedule_decision("a1", **timeouts)])
    if poll_after is not None:
        time.sleep(poll_after)
        task = client.poll_for_activity_task(domain="Faithful", taskList={"name": "work"})
        assert task.get("activityId") == "a1"
    timed_out = wait_for(
        lambda: [
            e["activityTaskTimedOutEventAttributes"]["timeoutType"]
            for e in client.get_workflow_execution_history(domain="Faithful", execution=execution)["events"]
            if e["eventType"] == "ActivityTaskTimedOut"
        ],
        timeout=6,
        message=f"a {kind} timeout",
    )
    assert timed_out == [kind]
    assert event_types(client, execution)[-1] == "DecisionTaskScheduled"  # the decider hears of it
    described = client.describe_workflow_execution(domain="Faithful", execution=execution)
    assert described["openCounts"]["openActivityTasks"] == 0  # moto left it at 1


@pytest.mark.parametrize("kind", ["activity", "decision"])
def test_a_late_respond_gets_unknown_resource(endpoint, kind):
    """SWF: UnknownResourceFault, HTTP 400; moto: ValueError, HTTP 500."""
    import botocore.exceptions

    client = swf_client(endpoint.url)
    register(client)
    if kind == "activity":
        execution = start_execution(client)
        decide(client, [schedule_decision("a1", startToCloseTimeout="1")])
        task = client.poll_for_activity_task(domain="Faithful", taskList={"name": "work"})
        respond = lambda: client.respond_activity_task_completed(taskToken=task["taskToken"], result="late")  # noqa: E731
    else:
        execution = start_execution(client, taskStartToCloseTimeout="1")
        task = client.poll_for_decision_task(domain="Faithful", taskList={"name": "decide"})
        respond = lambda: client.respond_decision_task_completed(taskToken=task["taskToken"], decisions=[])  # noqa: E731
    timed_out = f"{kind.capitalize()}TaskTimedOut"
    wait_for(lambda: timed_out in event_types(client, execution), timeout=6, message=timed_out)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        respond()
    assert info.value.response["Error"]["Code"] == "UnknownResourceFault"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_release_answers_every_held_poll_empty_at_once(held_endpoint):
    """SIGUSR2 (EmbeddedEndpoint.release_polls): a stopping master's children leave now, not after the hold."""
    client = swf_client(held_endpoint.url)
    register(client)
    answers: list[tuple[dict, float]] = []

    def poll():
        mine = swf_client(held_endpoint.url)
        answers.append((mine.poll_for_activity_task(domain="Faithful", taskList={"name": "work"}), time.monotonic()))

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    polls_held(held_endpoint, "Faithful/activity/work", 3)
    assert answers == []
    released = time.monotonic()
    held_endpoint.release_polls()
    for thread in threads:
        thread.join(timeout=5)
    assert len(answers) == 3
    assert all(not answer.get("taskToken") and at - released < 0.3 for answer, at in answers)
    assert held_endpoint.process.poll() is None  # alive and serving
    assert held_endpoint.held_polls() == {}


def test_the_state_survives_an_endpoint_restart(tmp_path):
    """embedded_state: the executions, their histories and tasks are there after a restart (moto: all lost)."""
    path = str(tmp_path / "run" / "embedded-state.pickle")
    first = EmbeddedEndpoint(port=0, poll_hold=1, state=path)
    try:
        client = swf_client(first.start())
        register(client)
        execution = start_execution(client)
        client.signal_workflow_execution(domain="Faithful", workflowId="w", signalName="before")
        before = event_types(client, execution)
    finally:
        assert first.stop() == 0
    assert os.path.exists(path) and os.listdir(os.path.dirname(path)) == ["embedded-state.pickle"]
    second = EmbeddedEndpoint(port=0, poll_hold=1, state=path)
    try:
        client = swf_client(second.start())
        assert second.warnings == []
        assert event_types(client, execution) == before
        task = client.poll_for_decision_task(domain="Faithful", taskList={"name": "decide"})
        assert task["workflowExecution"] == execution
        client.respond_decision_task_completed(
            taskToken=task["taskToken"], decisions=[{"decisionType": "CompleteWorkflowExecution"}]
        )
        closed = client.describe_workflow_execution(domain="Faithful", execution=execution)
        assert closed["executionInfo"]["closeStatus"] == "COMPLETED"
    finally:
        second.stop()


def test_a_state_of_another_moto_version_is_discarded_with_a_warning(tmp_path, caplog):
    import pickle

    path = tmp_path / "embedded-state.pickle"
    path.write_bytes(pickle.dumps({"format": 1, "moto": "0.0.1", "saved": 0}) + b"from another moto")
    endpoint = EmbeddedEndpoint(port=0, poll_hold=1, state=str(path))
    with caplog.at_level("WARNING", logger="caravand.embedded"):
        try:
            client = swf_client(endpoint.start())
            assert client.list_domains(registrationStatus="REGISTERED")["domainInfos"] == []
        finally:
            endpoint.stop()
    [warning] = endpoint.warnings
    assert f"embedded_state {path}: saved by moto 0.0.1, this is moto " in warning and "discarded" in warning
    assert warning in caplog.text


def test_a_master_stops_in_a_moment_though_its_children_polls_are_held_60_s(spawn, tmp_path):
    """caravand on the embedded endpoint (SWF's 60 s hold) stops at once on TERM: it releases its children's polls."""
    from test_master_e2e import booted, demo_pool, master_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ini = tmp_path / "caravan.ini"
    ini.write_text(
        f"[caravand]\nendpoint_url = embedded\nembedded_port = {port}\nregister_domains = true\nmetrics_bind =\n\n"
        + demo_pool("demo", "HeldStop", processes=2)
    )
    master = spawn("caravand", str(ini), env=master_env())
    booted(master, "demo#1")
    booted(master, "demo#2")
    held = EmbeddedEndpoint(port=port)  # the master's endpoint, only asked what it holds
    held.url = f"http://127.0.0.1:{port}"
    polls_held(held, "HeldStop/decision/default", 2)
    stopping = time.monotonic()
    master.send(signal.SIGTERM)
    assert master.wait(timeout=30) == 0
    assert time.monotonic() - stopping < 3, master.output()


# -- caravand on the faithful endpoint: what item 4 and item 6 promise, end to end


def stall_pools(domain: str, *, activities: bool = True) -> str:
    """The Stalled workflow's decider pool and (``activities``) its Stall activity pool (tests/workloads/stall_*)."""
    from test_master_e2e import pool_section

    pools = pool_section("stall", domain=domain, task_list="stall", modules="stall_workflow", processes=1)
    if activities:
        pools += "\n" + pool_section("work", use="egg:caravand#activity", domain=domain, task_list="stall-work",
                                     modules="stall_activities", processes=1)  # fmt: skip
    return pools


def start_stalled(client, domain: str, workflow_id: str, *, stall: bool) -> dict:
    run_id = client.start_workflow_execution(domain=domain, workflowId=workflow_id,
                                             workflowType={"name": "Stalled", "version": "1.0"},
                                             input=json.dumps({"stall": stall}))["runId"]  # fmt: skip
    return {"workflowId": workflow_id, "runId": run_id}


def closed_history(client, domain: str, execution: dict, timeout: float) -> list[dict]:
    """The execution's history once it closed (waited for up to ``timeout`` s)."""

    def closed():
        described = client.describe_workflow_execution(domain=domain, execution=execution)
        return described["executionInfo"]["executionStatus"] == "CLOSED"

    wait_for(closed, timeout, interval=0.2, message=f"{execution['workflowId']} closed")
    return client.get_workflow_execution_history(domain=domain, execution=execution)["events"]


def test_a_killed_activity_workers_task_is_retried_after_its_start_to_close_timeout(endpoint, spawn, tmp_path):
    """SWF times out a started task whose worker died after its start-to-close timeout (ActivityTaskTimedOut
    START_TO_CLOSE), and the decider retries it: the workflow completes. moto never timed it out (no heartbeat
    timeout here): the execution waited for its own 600 s timeout."""
    from helpers import write_master_ini
    from test_master_e2e import booted, master_env, pool_children

    ini = write_master_ini(tmp_path / "caravan.ini", endpoint, stall_pools("Stalls"))
    master = spawn("caravand", str(ini), env=master_env())
    booted(master, "stall#1")
    booted(master, "work#1")
    client = swf_client(endpoint.url)
    execution = start_stalled(client, "Stalls", "killed", stall=True)
    wait_for(lambda: "ActivityTaskStarted" in event_types(client, execution, "Stalls"), 20, message="attempt 1 started")
    [worker] = pool_children(master.pid)["work"]
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    events = closed_history(client, "Stalls", execution, timeout=40)
    types = [event["eventType"] for event in events]
    assert types[-1] == "WorkflowExecutionCompleted", types
    [timed_out] = [e["activityTaskTimedOutEventAttributes"] for e in events if e["eventType"] == "ActivityTaskTimedOut"]
    assert timed_out["timeoutType"] == "START_TO_CLOSE"
    completed = [e["activityTaskCompletedEventAttributes"] for e in events if e["eventType"] == "ActivityTaskCompleted"]
    assert [c["result"] for c in completed] == ["done at attempt 2"]
    assert types.index("ActivityTaskTimedOut") < types.index("ActivityTaskCompleted")
    assert time.monotonic() - killed >= 2  # not before its 3 s timeout (less the time to see it started)
    master.send(signal.SIGTERM)
    assert master.wait(timeout=30) == 0


def test_a_workflow_started_before_a_caravand_stop_completes_after_its_restart(spawn, tmp_path):
    """caravand on its embedded endpoint with embedded_state: an execution whose activity was scheduled before a
    stop is there after the restart, history and task, and completes (moto: every execution lost on a stop)."""
    from test_master_e2e import booted, master_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "run" / "embedded-state.pickle"
    ini = tmp_path / "caravan.ini"

    def write(pools: str) -> None:
        ini.write_text(
            f"[caravand]\nendpoint_url = embedded\nembedded_port = {port}\nembedded_state = {state}\n"
            "register_domains = true\npoll_timeout = 1\ngraceful_timeout = 25\nmetrics_bind =\n\n" + pools
        )

    write(stall_pools("Restarts", activities=False))  # no worker yet: the activity waits, scheduled
    first = spawn("caravand", str(ini), env=master_env())
    booted(first, "stall#1")
    client = swf_client(f"http://127.0.0.1:{port}")
    # Stall as its pool registers it (stall_activities.py), so that the decider can schedule it already.
    client.register_activity_type(domain="Restarts", name="Stall", version="1.0",
                                  defaultTaskList={"name": "stall-work"}, defaultTaskStartToCloseTimeout="3",
                                  defaultTaskHeartbeatTimeout="NONE", defaultTaskScheduleToStartTimeout="NONE",
                                  defaultTaskScheduleToCloseTimeout="NONE")  # fmt: skip
    execution = start_stalled(client, "Restarts", "across", stall=False)
    wait_for(lambda: "ActivityTaskScheduled" in event_types(client, execution, "Restarts"), 20, message="scheduled")
    before = event_types(client, execution, "Restarts")
    first.send(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, first.output()
    assert state.exists()

    write(stall_pools("Restarts"))
    second = spawn("caravand", str(ini), env=master_env())
    booted(second, "work#1")
    events = closed_history(client, "Restarts", execution, timeout=30)
    types = [event["eventType"] for event in events]
    assert types[: len(before)] == before
    assert types[-1] == "WorkflowExecutionCompleted"
    assert events[-1]["workflowExecutionCompletedEventAttributes"]["result"] == "done at attempt 1"
    second.send(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, second.output()


def test_caravanctl_cancel_asks_the_execution_to_cancel_itself(endpoint):
    """caravanctl cancel (RequestCancelWorkflowExecution) on the local endpoint: WorkflowExecutionCancelRequested
    and a decision task, as on SWF (moto: no such call, caravanctl said the emulator lacks it)."""
    from helpers import run_cli

    client = swf_client(endpoint.url)
    register(client, "Cancels")
    execution = start_execution(client, domain="Cancels")
    decide(client, [], domain="Cancels")
    result = run_cli("caravanctl", "-d", "Cancels", "cancel", "-i", "w")
    assert result.returncode == 0, result.stderr
    assert event_types(client, execution, "Cancels")[-2:] == [
        "WorkflowExecutionCancelRequested",
        "DecisionTaskScheduled",
    ]
    decide(client, [{"decisionType": "CancelWorkflowExecution"}], domain="Cancels")
    info = client.describe_workflow_execution(domain="Cancels", execution=execution)["executionInfo"]
    assert (info["closeStatus"], info["cancelRequested"]) == ("CANCELED", True)
