"""The activity task poll loop: moto end to end in process, then botocore's Stubber.

moto has no RespondActivityTaskCanceled: cancellation is tested with the Stubber.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from endpoints import ScriptedEndpoint
from helpers import FakeClock
from stubs import RecordingHooks, ScriptedClient, StubbedPoller, client_error

from caravand import Activity, ActivityCanceled, ActivityTask, Workflow, activity, swf
from caravand.activity_worker import ActivityWorker, encode_result
from caravand.decider import Decider


def task_response(name: str = "Echo", version: str = "1.0", input: str | None = "hello", token: str = "token-1"):
    data = {
        "taskToken": token,
        "activityId": "a1",
        "startedEventId": 6,
        "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
        "activityType": {"name": name, "version": version},
    }
    if input is not None:
        data["input"] = input
    return data


# -- activities


class Echo(Activity):
    """Returns what its input names: a str, a dict, None..."""

    name = "Echo"
    version = "1.0"
    default_task_list = "acts"

    def run(self):
        return {
            "str": "plain text, not JSON",
            "dict": {"a": 1, "b": [1, 2]},
            "none": None,
            "list": [1, "two"],
            "number": 42,
            "exact": "x" * swf.MAX_INPUT,
            "oversize": "x" * (swf.MAX_INPUT + 1),
            "oversize-json": {"blob": "y" * swf.MAX_INPUT},
            "object": object(),
        }[self.task.input]


class Failing(Activity):
    name = "Failing"
    version = "1.0"

    def run(self):
        value = self.task.input
        raise ValueError(f"bad input: {value}")


class Cancelable(Activity):
    """Reports progress by hand until a heartbeat says stop (5 s at most); acknowledges the cancel request."""

    name = "Cancelable"
    version = "1.0"

    def run(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.task.heartbeat("50%"):
                raise ActivityCanceled("stopped at 50%")
            time.sleep(0.005)
        return "finished"


# -- the harness


class Harness(StubbedPoller):
    """An ActivityWorker (``worker``) on Stubber'd clients, serving ``activities`` on task list "acts"."""

    poll_operation = "poll_for_activity_task"
    empty_poll = {"startedEventId": 0}

    def __init__(self, activities, **kwargs):
        super().__init__(
            ActivityWorker, "acts", activities, identity="worker-1", hooks=RecordingHooks(key="activity_id"), **kwargs
        )
        self.worker = self.poller

    def add_task(self, **kwargs):
        self.add_poll(task_response(**kwargs))

    def answers(self) -> list[tuple[str, dict]]:
        return [(name, params) for name, params in self.calls if name.startswith("RespondActivityTask")]

    def run_task(self, **kwargs) -> tuple[str, dict]:
        """Poll one task, run it; returns its one answer (operation, params)."""
        self.add_task(**kwargs)
        assert self.worker.run_once() is True
        (answer,) = self.answers()
        return answer


def heartbeat_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("heartbeat-")]


class RecordingClients:
    """Stands for a poller's ``swf.Clients``: records each budget asked for and answers with one (stubbed) client."""

    def __init__(self, client):
        self.client = client
        self.budgets: list[float] = []

    def within(self, budget: float):
        self.budgets.append(budget)
        return self.client


# -- moto, in process


class Remote(Workflow):
    """Schedules one Echo, then completes with its result."""

    name = "Remote"
    version = "1.0"
    default_task_list = "deciders"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_child_policy = "TERMINATE"

    def run(self):
        echo = self.task.activities.get("echo-1")
        if echo is None:
            self.task.schedule_activity("echo-1", "Echo", "1.0", self.task.input, task_list="acts")
        elif echo.status == "completed":
            self.task.complete(echo.result)


class BeatingEcho(Echo):
    def run(self):
        # A manual heartbeat against moto: no cancel requested.
        assert self.task.heartbeat("half way") is False
        return super().run()


def test_moto_end_to_end_in_process(swf_client, fast_moto):
    swf_client.register_domain(name="Moto", workflowExecutionRetentionPeriodInDays="1")
    endpoint = swf.Endpoint(region="us-east-1")
    nap = FakeClock()
    worker = ActivityWorker(endpoint, "Moto", "acts", [BeatingEcho], sleep=nap.sleep, identity="worker-1")
    decider = Decider(endpoint, "Moto", "deciders", [Remote], sleep=nap.sleep)
    worker.start()
    decider.start()
    described = swf_client.describe_activity_type(domain="Moto", activityType={"name": "Echo", "version": "1.0"})
    assert described["configuration"]["defaultTaskList"] == {"name": "acts"}

    run_id = swf_client.start_workflow_execution(
        domain="Moto", workflowId="wf-moto", workflowType={"name": "Remote", "version": "1.0"}, input="dict"
    )["runId"]
    assert decider.run_once() is True  # schedules echo-1
    assert worker.run_once() is True  # runs and completes it
    assert worker.stats["completed"] == 1

    execution = {"workflowId": "wf-moto", "runId": run_id}
    events = swf_client.get_workflow_execution_history(domain="Moto", execution=execution)["events"]
    done = [e for e in events if e["eventType"] == "ActivityTaskCompleted"]
    assert len(done) == 1
    assert json.loads(done[0]["activityTaskCompletedEventAttributes"]["result"]) == {"a": 1, "b": [1, 2]}
    started = next(e for e in events if e["eventType"] == "ActivityTaskStarted")
    assert started["activityTaskStartedEventAttributes"]["identity"] == "worker-1"

    assert decider.run_once() is True  # completes the workflow with the result
    info = swf_client.describe_workflow_execution(domain="Moto", execution=execution)["executionInfo"]
    assert (info["executionStatus"], info["closeStatus"]) == ("CLOSED", "COMPLETED")
    assert worker.run_once() is False  # nothing more to do: an empty poll, and a pause
    assert nap.sleeps and nap.sleeps[-1] >= 1.0


# -- results


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("str", "plain text, not JSON"),
        ("dict", '{"a": 1, "b": [1, 2]}'),
        ("list", '[1, "two"]'),
        ("number", "42"),
        ("exact", "x" * 32768),
    ],
)
def test_result_completes_the_task(kind, result):
    h = Harness([Echo])
    h.stub.add_response("respond_activity_task_completed", {})
    assert h.run_task(input=kind) == ("RespondActivityTaskCompleted", {"taskToken": "token-1", "result": result})
    assert h.hooks.outcomes() == ["completed"]
    assert h.worker.stats["completed"] == 1
    h.assert_done()


def test_none_completes_without_a_result():
    h = Harness([Echo])
    h.stub.add_response("respond_activity_task_completed", {})
    assert h.run_task(input="none") == ("RespondActivityTaskCompleted", {"taskToken": "token-1"})
    h.assert_done()


@pytest.mark.parametrize("kind", ["oversize", "oversize-json"])
def test_oversize_result_fails_the_task_with_a_clear_reason(kind):
    h = Harness([Echo])
    h.stub.add_response("respond_activity_task_failed", {})
    name, params = h.run_task(input=kind)
    assert name == "RespondActivityTaskFailed"
    assert params["reason"] == "result-too-large"
    assert "Echo.run() returned" in params["details"] and "at most 32768" in params["details"]
    assert h.hooks.outcomes() == ["failed"]
    h.assert_done()


def test_result_that_cannot_be_encoded_fails_the_task():
    h = Harness([Echo])
    h.stub.add_response("respond_activity_task_failed", {})
    name, params = h.run_task(input="object")
    assert (name, params["reason"]) == ("RespondActivityTaskFailed", "result-not-encodable")
    assert "not JSON serializable" in params["details"]


def test_encode_result():
    assert encode_result(None) is None
    assert encode_result("s") == "s"
    assert encode_result({"k": [1]}) == '{"k": [1]}'
    assert encode_result(False) == "false"


# -- failures, cancel, unknown types


def test_exception_fails_the_task_with_reason_and_traceback():
    h = Harness([Failing])
    h.stub.add_response("respond_activity_task_failed", {})
    name, params = h.run_task(name="Failing", input="42")
    assert name == "RespondActivityTaskFailed"
    assert params["reason"] == "ValueError: bad input: 42"
    assert params["details"].startswith("Traceback (most recent call last):")
    assert params["details"].rstrip().splitlines()[-1] == "ValueError: bad input: 42"
    assert 'in run\n    raise ValueError(f"bad input: {value}")' in params["details"]
    assert h.hooks.outcomes() == ["failed"]
    assert h.worker.stats["failed"] == 1
    h.assert_done()


def test_a_long_exception_is_cut_to_swf_limits():
    h = Harness([Failing])
    h.stub.add_response("respond_activity_task_failed", {})
    message = "".join(f"{i:06d}" for i in range(10000))  # 60,000 characters
    _, params = h.run_task(name="Failing", input=message)
    assert len(params["reason"]) == 256
    assert params["reason"].startswith("ValueError: bad input: 000000000001")
    assert len(params["details"]) <= 32768
    assert params["details"].endswith(message[-1000:] + "\n")  # the traceback's tail: its last line


def test_activity_canceled_answers_canceled():
    h = Harness([Cancelable])
    h.stub.add_response("record_activity_task_heartbeat", {"cancelRequested": True})
    h.stub.add_response("respond_activity_task_canceled", {})
    assert h.run_task(name="Cancelable") == (
        "RespondActivityTaskCanceled",
        {"taskToken": "token-1", "details": "stopped at 50%"},
    )
    assert h.calls[1] == ("RecordActivityTaskHeartbeat", {"taskToken": "token-1", "details": "50%"})
    assert h.hooks.outcomes() == ["canceled"]
    assert h.worker.stats["canceled"] == 1
    h.assert_done()


def test_manual_heartbeats_are_coalesced_and_never_wait_on_the_network():
    sent = threading.Event()

    class Reporting(Activity):
        """Reports progress by hand: once, then (after it went out) a thousand times more."""

        name = "Reporting"
        version = "1.0"

        def run(self):
            assert self.task.heartbeat("started") is False
            assert sent.wait(5), "the heartbeat thread did not send the details"
            began = time.monotonic()
            answers = {self.task.heartbeat(f"{n} done") for n in range(1000)}
            return {"answers": sorted(answers), "fast": time.monotonic() - began < 0.5}

    h = Harness([Reporting])
    heartbeats = []  # every call, even one the Stubber refuses before its hooks run
    send = h.worker.client.record_activity_task_heartbeat

    def counted(**params):
        heartbeats.append(params)
        sent.set()
        return send(**params)

    h.worker.client.record_activity_task_heartbeat = counted
    h.stub.add_response("record_activity_task_heartbeat", {"cancelRequested": False})
    h.stub.add_response("respond_activity_task_completed", {})
    name, params = h.run_task(name="Reporting")
    assert (name, json.loads(params["result"])) == ("RespondActivityTaskCompleted", {"answers": [False], "fast": True})
    assert heartbeats == [{"taskToken": "token-1", "details": "started"}]  # before: 1001 calls
    # One call carried the details; the thousand that came within DETAILS_INTERVAL waited for the next.
    assert h.calls[1] == ("RecordActivityTaskHeartbeat", {"taskToken": "token-1", "details": "started"})
    assert h.names() == ["PollForActivityTask", "RecordActivityTaskHeartbeat", "RespondActivityTaskCompleted"]
    assert heartbeat_threads() == []
    h.assert_done()


def test_unknown_activity_type_is_failed():
    h = Harness([Echo])
    h.stub.add_response("respond_activity_task_failed", {})
    name, params = h.run_task(name="Nope", version="9")
    assert name == "RespondActivityTaskFailed"
    assert params == {
        "taskToken": "token-1",
        "reason": "unknown-activity-type",
        "details": "no worker for Nope 9 on worker-1",
    }
    assert h.hooks.calls[0] == ("task_started", "a1", None)
    assert h.hooks.outcomes() == ["unknown-type"]
    h.assert_done()


def test_stale_respond_is_counted_not_raised():
    h = Harness([Echo])
    h.stub.add_client_error(
        "respond_activity_task_completed", service_error_code="UnknownResourceFault", service_message="Unknown task"
    )
    h.add_task(input="str")
    assert h.worker.run_once() is True
    assert h.hooks.outcomes() == ["stale"]
    assert h.worker.stats["stale"] == 1
    h.assert_done()


def test_a_lost_task_is_not_answered():
    class Lost(Activity):
        name = "Lost"
        version = "1.0"

        def run(self):
            assert self.task.heartbeat() is True  # SWF forgot the task: timed out
            return "too late"

    h = Harness([Lost])
    h.stub.add_client_error("record_activity_task_heartbeat", service_error_code="UnknownResourceFault")
    h.add_task(name="Lost")
    h.worker.run_once()
    assert h.answers() == []
    assert h.hooks.outcomes() == ["stale"]
    h.assert_done()


def test_deadline_from_the_start_to_close_timeout():
    h = Harness([Echo])
    h.stub.add_response("respond_activity_task_completed", {})
    h.run_task(input="str")
    assert h.hooks.calls[0] == ("task_started", "a1", 1000.0 + 300)


# -- heartbeats


class Patient(Activity):
    """Waits (with a deadline) until the worker's own heartbeat is seen."""

    name = "Patient"
    version = "1.0"
    default_task_heartbeat_timeout = "2"
    heartbeat_seen: threading.Event
    threads: list[str] = []

    def run(self):
        Patient.threads = heartbeat_threads()
        return {"heartbeat_seen": Patient.heartbeat_seen.wait(5)}


def test_automatic_heartbeats_while_run_is_busy(monkeypatch):
    monkeypatch.setattr(activity, "HEARTBEAT_FRACTION", 0.05)  # 2 s timeout -> every 0.1 s
    assert Patient.heartbeat_interval() == pytest.approx(0.1)
    Patient.heartbeat_seen = threading.Event()
    h = Harness([Patient])
    h.worker.client.meta.events.register_first(
        "before-parameter-build.swf.RecordActivityTaskHeartbeat", lambda **kwargs: Patient.heartbeat_seen.set()
    )
    h.stub.add_response("record_activity_task_heartbeat", {"cancelRequested": False})
    h.stub.add_response("respond_activity_task_completed", {})

    clients = h.worker.clients = RecordingClients(h.worker.client)
    name, params = h.run_task(name="Patient")

    assert (name, params["result"]) == ("RespondActivityTaskCompleted", '{"heartbeat_seen": true}')
    # The heartbeat's one attempt fits in half of what was left of the 2 s timeout (about 1.9 s).
    heartbeat_budget, respond_budget = clients.budgets
    assert 0.5 < heartbeat_budget <= (2 - 0.1) / 2
    assert respond_budget == 300 / 2  # the respond's: half the time to the task's start-to-close deadline
    assert h.names()[:3] == ["PollForActivityTask", "RecordActivityTaskHeartbeat", "RespondActivityTaskCompleted"]
    assert h.calls[1][1] == {"taskToken": "token-1"}
    assert Patient.threads == ["heartbeat-a1"]
    assert heartbeat_threads() == []  # stopped with the task
    h.assert_done()


def test_no_automatic_heartbeats_without_a_heartbeat_timeout():
    class Quiet(Activity):
        name = "Quiet"
        version = "1.0"

        def run(self):
            return heartbeat_threads()

    h = Harness([Quiet])
    h.stub.add_response("respond_activity_task_completed", {})
    assert h.run_task(name="Quiet")[1]["result"] == "[]"


# -- fail_task_in_hand, stop


def test_fail_task_in_hand_answers_once():
    started, release = threading.Event(), threading.Event()

    class Blocking(Activity):
        name = "Blocking"
        version = "1.0"

        def run(self):
            started.set()
            release.wait(5)
            return "late result"

    h = Harness([Blocking])
    h.add_task(name="Blocking")
    h.stub.add_response(
        "respond_activity_task_failed",
        {},
        {"taskToken": "token-1", "reason": "worker-shutdown", "details": "worker-1 stopped before the task finished"},
    )
    assert h.worker.fail_task_in_hand() is False  # nothing in hand yet

    thread = threading.Thread(target=h.worker.run_once, daemon=True)
    thread.start()
    try:
        assert started.wait(5), "the activity did not start"
        assert h.worker.task is not None
        assert h.worker.fail_task_in_hand() is True
        assert h.worker.fail_task_in_hand() is False  # answered already
    finally:
        release.set()
        thread.join(5)
    assert not thread.is_alive()

    # The completion that came later was not sent.
    assert [name for name, _ in h.answers()] == ["RespondActivityTaskFailed"]
    assert h.hooks.outcomes() == ["abandoned"]
    assert h.worker.task is None
    assert h.worker.fail_task_in_hand() is False
    h.assert_done()


def hand(worker: ActivityWorker, **kwargs) -> ActivityTask:
    """Put a task in the worker's hand, as if run() were busy with it."""
    task = ActivityTask(task_response(**kwargs))
    worker.task, worker._answered = task, False
    return task


def test_fail_task_in_hand_is_retried_when_throttled():
    """A stop's RespondActivityTaskFailed meets throttling, then a 500: retried, it gets through (before: lost)."""
    h = Harness([Echo])
    hand(h.worker)
    h.stub.add_client_error("respond_activity_task_failed", service_error_code="ThrottlingException")
    h.stub.add_client_error("respond_activity_task_failed", service_error_code="InternalFailure", http_status_code=500)
    h.stub.add_response("respond_activity_task_failed", {})
    assert h.worker.fail_task_in_hand() is True
    assert h.names() == ["RespondActivityTaskFailed"] * 3
    assert h.fake.sleeps == [0.25, 0.5]  # capped backoff, full jitter (drawn at 1.0 here)
    h.assert_done()


def test_fail_task_in_hand_keeps_to_its_budget():
    h = Harness([Echo])
    hand(h.worker)
    times = []
    h.worker.client = ScriptedClient(
        then=lambda params: times.append(h.fake.now) or client_error("ThrottlingException")
    )
    clients = h.worker.clients = RecordingClients(h.worker.client)
    started = h.fake.now
    assert h.worker.fail_task_in_hand(budget=8.0) is False
    assert h.fake.now - started <= 8.0
    assert len(times) >= 4  # retried while the budget lasted
    for at, budget in zip(times, clients.budgets, strict=True):
        assert budget <= (started + 8.0 - at) / 2 + 1e-9  # each attempt's timeouts fit half of what is left


def test_fail_task_in_hand_never_outlives_its_budget_on_an_endpoint_that_never_answers():
    with ScriptedEndpoint(then="hang") as server:
        worker = ActivityWorker(server.endpoint(), "D", "acts", [Echo], register=False, identity="worker-1")
        worker.start()
        hand(worker)
        began = time.monotonic()
        assert worker.fail_task_in_hand(budget=0.9) is False
        elapsed = time.monotonic() - began
    assert elapsed < 0.9 + 0.3  # before: 3 attempts of 4 s connect + 20 s read
    assert server.operations() == ["RespondActivityTaskFailed"]


def test_fail_task_in_hand_on_the_wire_through_throttling_and_a_500():
    with ScriptedEndpoint("throttle", "500") as server:
        worker = ActivityWorker(server.endpoint(), "D", "acts", [Echo], register=False, rng=lambda: 0.1)
        worker.start()
        hand(worker)
        assert worker.fail_task_in_hand(budget=3.0) is True
    assert server.operations() == ["RespondActivityTaskFailed"] * 3
    assert server.requests[-1].body["reason"] == "worker-shutdown"


def test_a_failed_answer_is_retried_until_the_tasks_deadline():
    """Completing meets throttling for good: retried until start-to-close (300 s), not dropped after 3 tries."""
    h = Harness([Echo])
    times = []
    h.worker.client = ScriptedClient(
        then=lambda params: times.append(h.fake.now) or client_error("ThrottlingException")
    )
    h.add_task(input="str")
    assert h.worker.run_once() is True
    assert h.hooks.outcomes() == ["respond-failed"]
    assert len(times) > 10
    assert times[-1] <= 1000.0 + 300
    assert h.fake.now <= 1000.0 + 300
    assert h.worker.stats["respond_throttled"] == len(times) - 1


def test_stop_during_a_task_completes_it_then_returns():
    class StopsTheWorker(Activity):
        name = "StopsTheWorker"
        version = "1.0"

        def run(self):
            worker.stop()  # as SIGTERM would, while the task is in hand
            return "completed anyway"

    h = Harness([StopsTheWorker])
    worker = h.worker
    h.add_task(name="StopsTheWorker")
    h.stub.add_response("respond_activity_task_completed", {})
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "run_forever() did not return"
    assert h.answers() == [("RespondActivityTaskCompleted", {"taskToken": "token-1", "result": "completed anyway"})]
    assert h.names() == ["PollForActivityTask", "RespondActivityTaskCompleted"]
    h.assert_done()


def test_empty_poll_pauses():
    h = Harness([Echo])
    h.add_empty_poll()
    assert h.worker.run_once() is False
    assert h.fake.sleeps == [1.25]
    assert h.worker.stats["empty_polls"] == 1
    assert h.answers() == []


def test_throttled_poll_backs_off():
    h = Harness([Echo])
    h.add_poll_error("ThrottlingException")
    h.add_poll_error("ThrottlingException")
    assert h.worker.run_once() is False
    assert h.worker.run_once() is False
    assert h.fake.sleeps == [0.5, 1.0]
    assert h.worker.stats["throttled"] == 2


def test_worker_construction():
    worker = ActivityWorker(swf.Endpoint(region="us-east-1"), "D", "acts", {("Echo", "1.0"): Echo})
    assert worker.activities == {("Echo", "1.0"): Echo}
    assert worker.kind == "activity"
    assert worker.task is None


def test_heartbeats_go_on_while_a_completed_answer_is_retried(monkeypatch):
    """Before, heartbeats stopped when run() returned: a respond throttled longer than the heartbeat timeout
    then met ActivityTaskTimedOut (HEARTBEAT), and the finished result was thrown away as stale."""

    class Long(Activity):
        name = "Long"
        version = "1.0"
        default_task_start_to_close_timeout = "3600"
        default_task_heartbeat_timeout = "30"

        def run(self):
            return "done"

    h = Harness([Long])
    alive_at_answer = []
    real_respond = h.worker.respond

    def respond(task, method, outcome, **params):
        heartbeater = task._heartbeater
        alive_at_answer.append(heartbeater is not None and heartbeater.is_alive())
        return real_respond(task, method, outcome, **params)

    monkeypatch.setattr(h.worker, "respond", respond)
    h.stub.add_response("respond_activity_task_completed", {})
    name, params = h.run_task(name="Long")
    assert (name, params["result"]) == ("RespondActivityTaskCompleted", "done")
    assert alive_at_answer == [True]  # still heartbeating while the answer goes out
    assert heartbeat_threads() == []  # and stopped once it is answered
    h.assert_done()
