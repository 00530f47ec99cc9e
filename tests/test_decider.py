"""The decision task poll loop: moto end to end in process, then botocore's Stubber for the rest.

No test sleeps for real: the loop gets a fake clock and a fake sleep that
records every pause (its ``rng`` is fixed at 1.0, the top of the jitter).
"""

from __future__ import annotations

import logging
import threading

import pytest
from helpers import FakeClock
from stubs import NOWHERE, PollRecordingHooks, StubbedPoller, event, offline_client

from caravand import DecisionDone, Workflow, swf
from caravand.decider import PAGE_ATTEMPT_BUDGET, PAGE_ATTEMPTS, PAGE_BACKOFF_CAP, Decider, check_on_error
from caravand.poller import FAST_EMPTY_POLL

# -- histories


def start_history(input: str | None = None, timeout: str = "10") -> list[dict]:
    """WorkflowExecutionStarted, DecisionTaskScheduled, DecisionTaskStarted."""
    started = {"childPolicy": "TERMINATE", "taskList": {"name": "deciders"}, "workflowType": WTYPE}
    if input is not None:
        started["input"] = input
    return [
        event(1, "WorkflowExecutionStarted", **started),
        event(2, "DecisionTaskScheduled", taskList={"name": "deciders"}, startToCloseTimeout=timeout),
        event(3, "DecisionTaskStarted", identity="decider-1", scheduledEventId=2),
    ]


WTYPE = {"name": "Flow", "version": "1.0"}


def poll_response(events: list[dict], *, token: str = "token-1", next_page: str | None = None, wtype=None) -> dict:
    data = {
        "taskToken": token,
        "startedEventId": 3,
        "previousStartedEventId": 0,
        "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
        "workflowType": wtype or WTYPE,
        "events": events,
    }
    if next_page:
        data["nextPageToken"] = next_page
    return data


# -- workflows


class Flow(Workflow):
    """Completes with its input, and remembers what it saw."""

    name = "Flow"
    version = "1.0"
    default_task_list = "deciders"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_child_policy = "TERMINATE"
    seen: list = []
    on_run = None

    def run(self):
        Flow.seen.append(self.task)
        if Flow.on_run:
            Flow.on_run(self)
        self.task.complete(f"done: {self.task.input}")


@pytest.fixture(autouse=True)
def reset_flow():
    Flow.seen = []
    Flow.on_run = None
    yield
    Flow.seen = []
    Flow.on_run = None


def completed(result: str) -> list[dict]:
    return [
        {"decisionType": "CompleteWorkflowExecution", "completeWorkflowExecutionDecisionAttributes": {"result": result}}
    ]


# -- the harness: a Decider on stubbed clients, a fake clock, recording hooks


class DeciderHooks(PollRecordingHooks):
    """PollRecordingHooks that record the paging of a history too: ``("paging_started", deadline)``.

    ``timeline`` lists every hook call as (time on the poller's clock, hook,
    the deadline it announces or None), for ``assert_deadlines_kept``.
    """

    def __init__(self):
        super().__init__()
        self.timeline: list[tuple[float, str, float | None]] = []

    def note(self, poller, hook: str, deadline: float | None = None):
        self.timeline.append((poller.clock(), hook, deadline))

    def poll_started(self, poller, deadline):
        self.note(poller, "poll_started", deadline)
        super().poll_started(poller, deadline)

    def paging_started(self, poller, deadline):
        self.note(poller, "paging_started", deadline)
        self.calls.append(("paging_started", deadline))

    def poll_ended(self, poller, got_task, seconds):
        self.note(poller, "poll_ended")
        super().poll_ended(poller, got_task, seconds)

    def task_started(self, poller, task, deadline):
        self.note(poller, "task_started", deadline)
        super().task_started(poller, task, deadline)

    def task_ended(self, poller, task, outcome, seconds):
        self.note(poller, "task_ended")
        super().task_ended(poller, task, outcome, seconds)

    def assert_deadlines_kept(self):
        """Every hook call comes by the deadline last announced: the master, which kills a
        child past its deadline, would have killed none of these."""
        in_force = None
        for at, hook, deadline in self.timeline:
            assert in_force is None or at <= in_force, f"{hook} at {at} is past the deadline {in_force}"
            if hook in ("poll_started", "paging_started", "task_started"):
                in_force = deadline


class Harness(StubbedPoller):
    """A Decider (``decider``) on Stubber'd clients, serving ``workflows`` on task list "deciders".

    History pages are fetched on the ordinary client: ``add_page`` queues
    them there, and ``ordinary`` lists the operations made on that client.
    """

    poll_operation = "poll_for_decision_task"
    empty_poll = {"startedEventId": 0, "previousStartedEventId": 0}

    def __init__(self, workflows, **kwargs):
        super().__init__(Decider, "deciders", workflows, identity="decider-1", hooks=DeciderHooks(), **kwargs)
        self.decider = self.poller
        self.ordinary: list[str] = []
        self.decider.client.meta.events.register(
            "before-parameter-build.swf", lambda model, **kwargs: self.ordinary.append(model.name)
        )

    def add_page(self, response: dict):
        self.stub.add_response("poll_for_decision_task", response)

    def add_page_error(self, code: str, status: int = 400):
        self.stub.add_client_error("poll_for_decision_task", service_error_code=code, http_status_code=status)

    def add_respond(self):
        self.stub.add_response("respond_decision_task_completed", {})

    def responds(self) -> list[dict]:
        return [params for name, params in self.calls if name == "RespondDecisionTaskCompleted"]

    def sent_failure(self) -> dict:
        """The attributes of the one decision sent: a FailWorkflowExecution, counted as workflow-failed."""
        (respond,) = self.responds()
        (decision,) = respond["decisions"]
        assert decision["decisionType"] == "FailWorkflowExecution"
        assert self.decider.stats["workflow-failed"] == 1
        assert self.hooks.outcomes() == ["workflow-failed"]
        return decision["failWorkflowExecutionDecisionAttributes"]


def run_in_thread(poller, timeout: float = 5.0):
    """run_forever() in a thread; fails if it does not return within ``timeout``."""
    errors = []

    def target():
        try:
            poller.run_forever()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        poller.stop()
        thread.join(5)
        raise AssertionError("run_forever() did not return")
    if errors:
        raise errors[0]


# -- moto, in process


@pytest.fixture
def moto_domain(swf_client, fast_moto):
    swf_client.register_domain(name="Moto", workflowExecutionRetentionPeriodInDays="1")
    return swf_client


def test_moto_registers_its_type_and_answers_a_started_execution(moto_domain):
    client = moto_domain
    fake, hooks = FakeClock(), PollRecordingHooks()
    decider = Decider(
        swf.Endpoint(region="us-east-1"), "Moto", "deciders", [Flow], hooks=hooks, sleep=fake.sleep, rng=lambda: 1.0
    )
    decider.start()
    described = client.describe_workflow_type(domain="Moto", workflowType=WTYPE)
    assert described["typeInfo"]["status"] == "REGISTERED"
    assert described["configuration"]["defaultTaskStartToCloseTimeout"] == "10"

    run_id = client.start_workflow_execution(domain="Moto", workflowId="wf-moto", workflowType=WTYPE, input="42")[
        "runId"
    ]
    hooks.on_task_ended = lambda poller: poller.stop()
    fake.on_sleep = lambda count: decider.stop() if count > 20 else None  # a guard, never reached
    decider.run_forever()

    execution = {"workflowId": "wf-moto", "runId": run_id}
    info = client.describe_workflow_execution(domain="Moto", execution=execution)["executionInfo"]
    assert (info["executionStatus"], info["closeStatus"]) == ("CLOSED", "COMPLETED")
    events = client.get_workflow_execution_history(domain="Moto", execution=execution)["events"]
    assert events[-1]["eventType"] == "WorkflowExecutionCompleted"
    assert events[-1]["workflowExecutionCompletedEventAttributes"]["result"] == "done: 42"
    assert decider.stats["completed"] == 1
    assert hooks.outcomes() == ["completed"]
    task = Flow.seen[0]
    assert [e["eventType"] for e in task.events] == [
        "WorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
    ]


def test_moto_empty_poll_pauses(moto_domain):
    fake = FakeClock()
    decider = Decider(
        swf.Endpoint(region="us-east-1"),
        "Moto",
        "deciders",
        [Flow],
        sleep=fake.sleep,
        clock=fake,
        rng=lambda: 1.0,
    )
    decider.start()
    assert decider.run_once() is False
    assert fake.sleeps == [1.25]
    assert decider.stats["empty_polls"] == 1


def test_moto_no_register(moto_domain):
    decider = Decider(swf.Endpoint(region="us-east-1"), "Moto", "deciders", [Flow], register=False)
    decider.start()
    assert decider.client is not None and decider.poll_client is not None
    with pytest.raises(swf.SWFError) as info:
        swf.call(moto_domain, "describe_workflow_type", domain="Moto", workflowType=WTYPE)
    assert info.value.code == "UnknownResourceFault"


# -- history paging


def test_history_pages_are_all_read_in_order():
    h = Harness([Flow])
    page_1 = start_history(input="paged")
    page_2 = [
        event(4, "DecisionTaskCompleted", scheduledEventId=2, startedEventId=3),
        event(5, "MarkerRecorded", markerName="m", decisionTaskCompletedEventId=4),
    ]
    page_3 = [
        event(6, "WorkflowExecutionSignaled", signalName="GO", input="x"),
        event(7, "DecisionTaskScheduled", taskList={"name": "deciders"}, startToCloseTimeout="10"),
        event(8, "DecisionTaskStarted", identity="decider-1", scheduledEventId=7),
    ]
    h.add_poll(poll_response(page_1, next_page="page-2"))
    h.add_page(poll_response(page_2, next_page="page-3"))
    h.add_page(poll_response(page_3))
    h.add_respond()

    assert h.decider.run_once() is True

    task = Flow.seen[0]
    assert [e["eventId"] for e in task.events] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert task.events[5]["attributes"] == {"signalName": "GO", "input": "x"}
    assert task.signals == [{"signalName": "GO", "input": "x"}]
    polls = [params for name, params in h.calls if name == "PollForDecisionTask"]
    assert [p.get("nextPageToken") for p in polls] == [None, "page-2", "page-3"]
    assert all(p["domain"] == "D" and p["taskList"] == {"name": "deciders"} for p in polls)
    # The pages came on the ordinary client, each announced with a fresh deadline.
    assert h.ordinary == ["PollForDecisionTask", "PollForDecisionTask", "RespondDecisionTaskCompleted"]
    assert [c for c in h.hooks.calls if c[0] == "paging_started"] == [
        ("paging_started", 1000.0 + PAGE_ATTEMPT_BUDGET)
    ] * 2
    assert h.responds() == [{"taskToken": "token-1", "decisions": completed("done: paged")}]
    assert h.fake.sleeps == []
    h.assert_done()


def test_a_page_that_fails_once_is_retried():
    h = Harness([Flow])
    h.add_poll(poll_response(start_history(input="retried"), next_page="page-2"))
    h.add_page_error("InternalFailure", 500)
    h.add_page(poll_response([event(4, "MarkerRecorded", markerName="m", decisionTaskCompletedEventId=3)]))
    h.add_respond()

    assert h.decider.run_once() is True

    assert [e["eventId"] for e in Flow.seen[0].events] == [1, 2, 3, 4]
    assert h.fake.sleeps == [0.2]  # one pause before the retry, and nothing else
    assert h.names() == ["PollForDecisionTask"] * 3 + ["RespondDecisionTaskCompleted"]
    # Each attempt announced its own deadline, the retry's after the pause.
    assert [c for c in h.hooks.calls if c[0] == "paging_started"] == [
        ("paging_started", 1000.0 + PAGE_ATTEMPT_BUDGET),
        ("paging_started", 1000.2 + PAGE_ATTEMPT_BUDGET),
    ]
    assert h.decider.stats["completed"] == 1
    h.assert_done()


def test_a_page_that_keeps_failing_abandons_the_task(caplog):
    h = Harness([Flow])
    h.add_poll(poll_response(start_history(), next_page="page-2"))
    for _ in range(PAGE_ATTEMPTS):
        h.add_page_error("ThrottlingException")

    assert h.decider.run_once() is True  # a task came, even if it cannot be decided

    assert Flow.seen == []  # the workflow never ran on a partial history
    assert "RespondDecisionTaskCompleted" not in h.names()
    assert h.names() == ["PollForDecisionTask"] * (1 + PAGE_ATTEMPTS)
    # A growing pause between the attempts, none after the last one (nor an empty-poll pause).
    assert h.fake.sleeps == [0.2, 0.4, 0.8, 1.6]
    assert "abandoned: decision task of wf-1" in caplog.text
    # Counted and reported as a task's outcome, not as an empty poll.
    assert h.decider.stats["abandoned"] == 1
    assert h.decider.stats["empty_polls"] == 0
    assert h.hooks.calls == [
        ("poll_started", 1000.0 + swf.POLL_READ_TIMEOUT),
        *[("paging_started", at + PAGE_ATTEMPT_BUDGET) for at in (1000.0, 1000.2, 1000.6, 1001.4, 1003.0)],
        ("poll_ended", True, 3.0),  # the pauses between the attempts
        ("task_started", "token-1", None),
        ("task_ended", "token-1", "abandoned", 0.0),
    ]
    h.assert_done()


def test_a_long_history_after_a_held_poll_is_paged_within_announced_deadlines():
    """A task that came at the end of a 60 s poll, with 24 more pages to read (SWF's 25,000 events).

    On the poll's deadline (start + 70 s), the master would kill the child,
    task in hand, about 10 s into the paging. Each page announces its own.
    """
    h = Harness([Flow])
    pages = 25
    attempts = (pages - 1) + 1  # every further page, and page 7 twice
    slow = {"page-7"}

    def held_poll(**kwargs):
        h.fake.now += 60.0

    def page_call(params, **kwargs):
        # A page answers at once, but not for free; page 7's first attempt is as
        # slow as botocore's attempts allow (3 read timeouts), then throttled.
        token = params["nextPageToken"]
        h.fake.now += 72.0 if token in slow else 2.0
        slow.discard(token)

    h.decider.poll_client.meta.events.register_first("before-parameter-build.swf.PollForDecisionTask", held_poll)
    h.decider.client.meta.events.register_first("before-parameter-build.swf.PollForDecisionTask", page_call)
    h.add_poll(poll_response(start_history(input="long"), next_page="page-2"))
    for number in range(2, pages + 1):
        if number == 7:
            h.add_page_error("ThrottlingException")
        following = f"page-{number + 1}" if number < pages else None
        marker = event(2 + number, "MarkerRecorded", markerName=f"m{number}", decisionTaskCompletedEventId=3)
        h.add_page(poll_response([marker], next_page=following))
    h.add_respond()

    assert h.decider.run_once() is True

    assert Flow.seen[0].events[-1]["attributes"]["markerName"] == f"m{pages}"
    assert h.responds() == [{"taskToken": "token-1", "decisions": completed("done: long")}]
    h.hooks.assert_deadlines_kept()
    timeline = [hook for _, hook, _ in h.hooks.timeline]
    assert timeline == ["poll_started", *["paging_started"] * attempts, "poll_ended", "task_started", "task_ended"]
    # The paging went on long past the poll's own deadline, and on the ordinary client.
    assert h.hooks.timeline[-3][0] == pytest.approx(1000.0 + 60 + 72 + 0.2 + 2 * (pages - 1))
    assert h.hooks.timeline[-3][0] > 1000.0 + swf.POLL_READ_TIMEOUT
    assert h.ordinary == ["PollForDecisionTask"] * attempts + ["RespondDecisionTaskCompleted"]
    assert h.names().count("PollForDecisionTask") == 1 + pages
    assert h.fake.sleeps == [0.2]
    h.assert_done()


def test_a_page_attempt_budget_covers_the_ordinary_clients_retries_and_our_pause():
    one_call = swf.CALL_MAX_ATTEMPTS * (swf.CONNECT_TIMEOUT + swf.CALL_READ_TIMEOUT)
    assert PAGE_ATTEMPT_BUDGET >= one_call + PAGE_BACKOFF_CAP


# -- empty polls, throttling, errors


def test_fast_empty_poll_pauses_with_jitter():
    h = Harness([Flow])
    h.add_empty_poll()
    assert h.decider.run_once() is False
    # The poll took no time: pause to about MIN_EMPTY_CYCLE (1 s) plus jitter (rng 1.0 -> 0.25).
    assert h.fake.sleeps == [1.25]
    assert h.decider.stats["empty_polls"] == 1
    assert Flow.seen == [] and h.responds() == []
    assert [c[0] for c in h.hooks.calls] == ["poll_started", "poll_ended"]
    assert h.hooks.calls[1] == ("poll_ended", False, 0.0)

    h.decider.rng = lambda: 0.0
    h.add_empty_poll()
    h.decider.run_once()
    assert h.fake.sleeps[-1] == 1.0


def test_slow_empty_poll_does_not_pause():
    h = Harness([Flow])

    def long_poll(**kwargs):
        h.fake.now += FAST_EMPTY_POLL + 58  # held by SWF like a real long poll

    h.decider.poll_client.meta.events.register_first("before-parameter-build.swf.PollForDecisionTask", long_poll)
    h.add_empty_poll()
    assert h.decider.run_once() is False
    assert h.fake.sleeps == []
    assert h.hooks.calls[1] == ("poll_ended", False, 60.0)


def test_empty_polls_never_spin_hot():
    h = Harness([Flow])
    for _ in range(5):
        h.add_empty_poll()
    h.fake.on_sleep = lambda count: h.decider.stop() if count == 5 else None
    run_in_thread(h.decider)
    assert h.names() == ["PollForDecisionTask"] * 5
    assert h.fake.sleeps == [1.25] * 5  # one pause after every empty poll
    h.assert_done()


def test_throttling_backs_off_capped_then_a_success_resets_it():
    h = Harness([Flow])
    for _ in range(8):
        h.add_poll_error("ThrottlingException")
    h.add_empty_poll()  # a success
    h.add_poll_error("ThrottlingException")
    h.add_poll(poll_response(start_history(input="at last")))
    h.add_respond()
    h.hooks.on_task_ended = lambda poller: poller.stop()

    run_in_thread(h.decider)

    # U(0, min(30, 0.5 * 2**n)) with rng 1.0: doubling, capped at 30 s.
    backoff = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert h.fake.sleeps == [*backoff, 1.25, 0.5]
    assert h.decider.stats["throttled"] == 9
    assert h.decider.stats["completed"] == 1
    failed = [c for c in h.hooks.calls if c[0] == "poll_failed"]
    assert failed == [("poll_failed", "ThrottlingException", True)] * 9
    assert h.responds() == [{"taskToken": "token-1", "decisions": completed("done: at last")}]
    assert h.decider.backoff.attempts == 0
    h.assert_done()


@pytest.mark.parametrize("code", ["LimitExceededFault", "RequestLimitExceeded", "TooManyRequestsException"])
def test_other_throttling_codes(code):
    h = Harness([Flow])
    h.add_poll_error(code)
    assert h.decider.run_once() is False
    assert h.decider.stats["throttled"] == 1
    assert h.hooks.calls[-1] == ("poll_failed", code, True)
    assert h.fake.sleeps == [0.5]


def test_server_errors_back_off_and_the_loop_survives():
    h = Harness([Flow])
    h.add_poll_error("InternalFailure", 500)
    h.add_poll_error("ServiceUnavailable", 503)
    h.add_poll(poll_response(start_history(input="ok")))
    h.add_respond()
    h.hooks.on_task_ended = lambda poller: poller.stop()

    run_in_thread(h.decider)

    assert h.fake.sleeps == [0.5, 1.0]
    assert h.decider.stats["poll_errors"] == 2
    assert [c for c in h.hooks.calls if c[0] == "poll_failed"] == [
        ("poll_failed", "InternalFailure", False),
        ("poll_failed", "ServiceUnavailable", False),
    ]
    assert h.decider.stats["completed"] == 1


def test_connection_errors_back_off():
    """A real, refused connection on loopback: the poll fails, the loop does not."""
    fake, hooks = FakeClock(), PollRecordingHooks()
    decider = Decider(
        swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"),
        "D",
        "deciders",
        [Flow],
        hooks=hooks,
        clock=fake,
        sleep=fake.sleep,
        rng=lambda: 1.0,
    )
    decider.poll_client = offline_client(poll=True)
    assert decider.run_once() is False
    assert decider.run_once() is False
    assert fake.sleeps == [0.5, 1.0]
    assert decider.stats["poll_errors"] == 2
    assert hooks.calls[-1] == ("poll_failed", "EndpointConnectionError", False)


def test_stop_cuts_a_backoff_pause_short():
    """With the default sleep, stop() wakes a loop that waits out a (here 50 s) backoff."""
    failed = threading.Event()
    hooks = PollRecordingHooks()
    hooks.poll_failed = lambda poller, error, throttled: failed.set()
    decider = Decider(
        swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"), "D", "deciders", [Flow], hooks=hooks, rng=lambda: 100.0
    )
    decider.client = decider.poll_client = offline_client(poll=True)
    thread = threading.Thread(target=decider.run_forever, daemon=True)
    thread.start()
    assert failed.wait(5), "the poll did not fail"
    decider.stop()
    thread.join(5)
    assert not thread.is_alive(), "stop() did not wake the backoff pause"
    decider.stop()  # twice is fine


# -- deciding: errors, unknown types, failures, stale tasks


class Broken(Workflow):
    name = "Flow"
    version = "1.0"

    def run(self):
        self.task.start_timer("t", 5)  # a decision made before the error is not sent
        raise RuntimeError("boom")


def test_exception_in_run_leaves_the_task_to_time_out(caplog):
    h = Harness([Broken])
    h.add_poll(poll_response(start_history()))

    assert h.decider.run_once() is True

    assert h.responds() == []
    assert h.names() == ["PollForDecisionTask"]
    assert h.decider.stats["error"] == 1
    assert h.hooks.outcomes() == ["error"]
    record = next(r for r in caplog.records if r.getMessage().startswith("workflow error"))
    assert record.levelno == logging.ERROR
    assert record.exc_info and record.exc_info[0] is RuntimeError  # logged with its traceback
    h.assert_done()


def test_exception_in_run_fails_the_execution_with_on_error_fail():
    h = Harness([Broken], on_error="fail")
    h.add_poll(poll_response(start_history()))
    h.add_respond()

    h.decider.run_once()

    attributes = h.sent_failure()
    assert attributes["reason"] == "RuntimeError: boom"
    assert attributes["details"].startswith("Traceback (most recent call last):")
    assert attributes["details"].rstrip().endswith("RuntimeError: boom")
    h.assert_done()


def test_a_long_error_is_cut_to_swf_limits_with_on_error_fail():
    class Verbose(Workflow):
        name = "Flow"
        version = "1.0"

        def run(self):
            raise ValueError("v" * 50000)

    h = Harness([Verbose], on_error="fail")
    h.add_poll(poll_response(start_history()))
    h.add_respond()
    h.decider.run_once()
    attributes = h.responds()[0]["decisions"][0]["failWorkflowExecutionDecisionAttributes"]
    assert len(attributes["reason"]) == 256 and attributes["reason"].startswith("ValueError: vvv")
    assert len(attributes["details"]) <= 32768 and attributes["details"].rstrip().endswith("vvvv")


def timed_out_tries(first_id: int, count: int) -> list[dict]:
    """``count`` decision tasks that timed out (START_TO_CLOSE), each scheduled again and started.

    The first timed-out task is the one scheduled and started just before ``first_id``.
    """
    events = []
    for timed_out in range(first_id, first_id + 3 * count, 3):
        events += [
            event(
                timed_out,
                "DecisionTaskTimedOut",
                scheduledEventId=timed_out - 2,
                startedEventId=timed_out - 1,
                timeoutType="START_TO_CLOSE",
            ),
            event(timed_out + 1, "DecisionTaskScheduled", taskList={"name": "deciders"}, startToCloseTimeout="10"),
            event(timed_out + 2, "DecisionTaskStarted", identity="decider-1", scheduledEventId=timed_out + 1),
        ]
    return events


def test_an_error_after_max_decision_retries_timeouts_fails_the_execution(caplog):
    """on_error = retry: the 6th error in a row (5 tasks left to time out already) fails the execution."""
    h = Harness([Broken])
    h.add_poll(poll_response([*start_history(), *timed_out_tries(4, 5)]))
    h.add_respond()

    assert h.decider.run_once() is True

    attributes = h.sent_failure()
    assert attributes["reason"] == "decision retries exhausted (5 timed out): RuntimeError: boom"
    assert attributes["details"].startswith("Traceback (most recent call last):")
    assert attributes["details"].rstrip().endswith("RuntimeError: boom")
    assert "failing workflow: <DecisionTask Flow" in caplog.text
    assert "(decision retries exhausted: 5 timed out in a row)" in caplog.text
    h.assert_done()


def test_an_error_with_retries_left_leaves_the_task(caplog):
    h = Harness([Broken])
    h.add_poll(poll_response([*start_history(), *timed_out_tries(4, 4)]))

    assert h.decider.run_once() is True

    assert h.responds() == []
    assert h.hooks.outcomes() == ["error"]
    assert "leaving task: <DecisionTask Flow" in caplog.text
    assert "(to time out, SWF retries it: 4 of 5 retries used)" in caplog.text
    h.assert_done()


@pytest.mark.parametrize(
    ("retries", "timeouts", "outcome"), [(0, 0, "workflow-failed"), (2, 1, "error"), (2, 2, "workflow-failed")]
)
def test_max_decision_retries_is_the_decider_s(retries, timeouts, outcome):
    h = Harness([Broken], max_decision_retries=retries)
    h.add_poll(poll_response([*start_history(), *timed_out_tries(4, timeouts)]))
    if outcome == "workflow-failed":
        h.add_respond()
    h.decider.run_once()
    assert h.hooks.outcomes() == [outcome]
    h.assert_done()


def test_an_error_in_a_task_without_timeout_fails_the_execution():
    """A task whose startToCloseTimeout is NONE (set at start) would never be scheduled again."""
    h = Harness([Broken])
    h.add_poll(poll_response(start_history(timeout="NONE")))
    h.add_respond()

    h.decider.run_once()

    attributes = h.sent_failure()
    assert attributes["reason"] == "decision task timeout NONE, cannot retry: RuntimeError: boom"
    assert attributes["details"].rstrip().endswith("RuntimeError: boom")
    h.assert_done()


def test_retry_refuses_a_workflow_type_without_task_timeout():
    class Untimed(Flow):
        default_task_start_to_close_timeout = "NONE"

    with pytest.raises(swf.ConfigError) as info:
        Decider(swf.Endpoint(region="us-east-1"), "D", "tl", [Untimed])
    assert str(info.value) == (
        "on_error = retry: workflow Flow 1.0 (test_retry_refuses_a_workflow_type_without_task_timeout.<locals>.Untimed) "
        "has default_task_start_to_close_timeout = NONE, so a task left after an error would never be retried: "
        "give it a timeout, or use on_error = fail"
    )
    assert Decider(swf.Endpoint(region="us-east-1"), "D", "tl", [Untimed], on_error="fail").on_error == "fail"


class Oversized(Workflow):
    """Completes with a result over SWF's limit."""

    name = "Flow"
    version = "1.0"

    def run(self):
        self.task.complete("x" * 40000)


def test_an_oversized_result_fails_the_execution_with_on_error_fail():
    h = Harness([Oversized], on_error="fail")
    h.add_poll(poll_response(start_history()))
    h.add_respond()

    h.decider.run_once()

    attributes = h.sent_failure()  # never a completion with a result cut short
    assert attributes["reason"] == (
        "PayloadTooLarge: CompleteWorkflowExecution result is 40000 characters, over SWF's limit of 32768: "
        "store it elsewhere (S3, a database) and pass a reference"
    )
    assert attributes["details"].rstrip().endswith(attributes["reason"])  # the traceback's last line
    h.assert_done()


def test_an_oversized_result_is_a_workflow_error_left_to_time_out_by_default():
    h = Harness([Oversized])
    h.add_poll(poll_response(start_history()))
    assert h.decider.run_once() is True
    assert h.responds() == []
    assert h.hooks.outcomes() == ["error"]
    h.assert_done()


def test_unknown_workflow_type_is_left_to_time_out(caplog):
    h = Harness([Flow])
    h.add_poll(poll_response(start_history(), wtype={"name": "Nope", "version": "9"}))

    assert h.decider.run_once() is True

    assert h.responds() == []
    assert Flow.seen == []
    assert h.decider.stats["unknown-type"] == 1
    assert h.hooks.outcomes() == ["unknown-type"]
    assert "unknown workflow type: <DecisionTask Nope v=9" in caplog.text
    assert "this decider serves: Flow 1.0" in caplog.text
    h.assert_done()


def test_unknown_workflow_type_fails_with_on_error_fail():
    h = Harness([Flow], on_error="fail")
    h.add_poll(poll_response(start_history(), wtype={"name": "Flow", "version": "2.0"}))
    h.add_respond()

    h.decider.run_once()

    assert h.responds() == [
        {
            "taskToken": "token-1",
            "decisions": [
                {
                    "decisionType": "FailWorkflowExecution",
                    "failWorkflowExecutionDecisionAttributes": {
                        "reason": "unknown-workflow-type",
                        "details": "no decider for Flow 2.0",
                    },
                }
            ],
        }
    ]
    assert Flow.seen == []
    assert h.hooks.outcomes() == ["workflow-failed"]
    h.assert_done()


def test_workflow_failure_fails_the_execution_with_reason_cut_to_256():
    class Failing(Workflow):
        name = "Flow"
        version = "1.0"

        def run(self):
            self.task.fail("r" * 300, "details " * 10000)

    h = Harness([Failing])
    h.add_poll(poll_response(start_history()))
    h.add_respond()

    h.decider.run_once()

    attributes = h.sent_failure()
    assert len(attributes["reason"]) == 256 and attributes["reason"].startswith("rrrr")
    assert len(attributes["details"]) <= 32768 and attributes["details"].endswith("details ")
    h.assert_done()


def test_decision_done_sends_the_decisions_made_so_far():
    class Early(Workflow):
        name = "Flow"
        version = "1.0"

        def run(self):
            self.task.start_timer("wait", 60)
            self.task.decision_done("waiting")
            self.task.complete("never")

    h = Harness([Early])
    h.add_poll(poll_response(start_history()))
    h.add_respond()
    h.decider.run_once()
    assert h.responds()[0]["decisions"] == [
        {"decisionType": "StartTimer", "startTimerDecisionAttributes": {"timerId": "wait", "startToFireTimeout": "60"}}
    ]
    assert h.hooks.outcomes() == ["completed"]


def test_execution_context_is_sent():
    Flow.on_run = lambda workflow: setattr(workflow.task, "execution_context", "step-2")
    h = Harness([Flow])
    h.add_poll(poll_response(start_history(input="ctx")))
    h.add_respond()
    h.decider.run_once()
    assert h.responds() == [{"taskToken": "token-1", "decisions": completed("done: ctx"), "executionContext": "step-2"}]


def test_stale_respond_is_counted_not_raised(caplog):
    h = Harness([Flow])
    h.add_poll(poll_response(start_history()))
    h.stub.add_client_error(
        "respond_decision_task_completed",
        service_error_code="UnknownResourceFault",
        service_message="Unknown decision task, scheduledEventId = 2",
    )

    assert h.decider.run_once() is True

    assert h.decider.stats["stale"] == 1
    assert h.decider.stats["completed"] == 0
    assert h.hooks.outcomes() == ["stale"]
    stale = [r for r in caplog.records if r.getMessage().startswith("stale task")]
    assert stale and stale[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    h.assert_done()


def test_other_respond_errors_are_counted():
    h = Harness([Flow])
    h.add_poll(poll_response(start_history()))
    h.stub.add_client_error(
        "respond_decision_task_completed", service_error_code="InternalFailure", http_status_code=500
    )
    assert h.decider.run_once() is True
    assert h.decider.stats["respond-failed"] == 1
    assert h.hooks.outcomes() == ["respond-failed"]


def test_a_decision_swf_would_refuse_does_not_kill_the_loop(caplog):
    """botocore refuses a malformed decision before sending it: a failed respond, not a crash."""

    class Sloppy(Workflow):
        name = "Flow"
        version = "1.0"

        def run(self):
            self.task.add_decision("StartTimer", timerId="t", startToFireTimeout=300)  # an int, not a string

    h = Harness([Sloppy])
    # A plain client: botocore validates the request before it would try to send it.
    h.decider.client = offline_client()
    h.add_poll(poll_response(start_history()))
    h.add_poll(poll_response(start_history(), token="token-2"))
    h.hooks.on_task_ended = lambda poller: poller.stop() if len(h.hooks.outcomes()) == 2 else None

    run_in_thread(h.decider)

    assert h.hooks.outcomes() == ["respond-failed", "respond-failed"]
    assert h.decider.stats["respond-failed"] == 2
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("respond failed")]
    assert len(refused) == 2
    assert "Invalid type for parameter decisions[0].startTimerDecisionAttributes.startToFireTimeout" in refused[0]
    h.assert_done()


# -- hooks and stop


def test_hooks_see_polls_and_tasks_with_deadlines():
    h = Harness([Flow])

    def slow_poll(**kwargs):
        h.fake.now += 3.0

    h.decider.poll_client.meta.events.register_first("before-parameter-build.swf.PollForDecisionTask", slow_poll)
    Flow.on_run = lambda workflow: setattr(h.fake, "now", h.fake.now + 2.0)  # deciding takes 2 s
    h.add_poll(poll_response(start_history(timeout="10")))
    h.add_respond()

    h.decider.run_once()

    assert h.hooks.calls == [
        ("poll_started", 1000.0 + swf.POLL_READ_TIMEOUT),
        ("poll_ended", True, 3.0),
        ("task_started", "token-1", 1003.0 + 10),  # from DecisionTaskScheduled's startToCloseTimeout
        ("task_ended", "token-1", "completed", 2.0),
    ]


def test_a_throttled_respond_is_retried_until_the_decision_task_s_deadline():
    """The decisions are finished work: a busy SWF is retried, but not past the task's timeout (10 s)."""
    h = Harness([Flow])
    h.add_poll(poll_response(start_history(timeout="10")))
    for _ in range(100):
        h.stub.add_client_error("respond_decision_task_completed", service_error_code="ThrottlingException")

    assert h.decider.run_once() is True

    assert h.hooks.outcomes() == ["respond-failed"]
    assert len(h.responds()) > 1  # retried...
    assert h.fake.now <= 1000.0 + 10  # ...within the task's deadline, when SWF would refuse it anyway


def test_task_deadline_from_the_latest_decision_task_scheduled():
    h = Harness([Flow])
    events = [
        *start_history(timeout="10"),
        event(4, "DecisionTaskTimedOut", scheduledEventId=2, startedEventId=3, timeoutType="START_TO_CLOSE"),
        event(5, "DecisionTaskScheduled", taskList={"name": "deciders"}, startToCloseTimeout="25"),
        event(6, "DecisionTaskStarted", identity="decider-1", scheduledEventId=5),
    ]
    h.add_poll(poll_response(events))
    h.add_respond()
    h.decider.run_once()
    assert ("task_started", "token-1", 1000.0 + 25) in h.hooks.calls

    none = Harness([Flow])
    none.add_poll(poll_response(start_history(timeout="NONE")))
    none.add_respond()
    none.decider.run_once()
    assert ("task_started", "token-1", None) in none.hooks.calls


def test_stop_during_a_poll_still_answers_its_task():
    h = Harness([Flow])
    h.add_poll(poll_response(start_history(input="last one")))
    h.add_respond()
    # stop() arrives while the poll is in flight: the hook runs as the poll returns.
    h.hooks.on_poll_ended = lambda poller: poller.stop()

    run_in_thread(h.decider)

    assert h.responds() == [{"taskToken": "token-1", "decisions": completed("done: last one")}]
    assert h.names() == ["PollForDecisionTask", "RespondDecisionTaskCompleted"]  # and no further poll
    assert h.hooks.outcomes() == ["completed"]
    h.assert_done()


def test_stop_from_run_finishes_the_task_first():
    h = Harness([Flow])
    Flow.on_run = lambda workflow: h.decider.stop()
    h.add_poll(poll_response(start_history(input="x")))
    h.add_respond()
    run_in_thread(h.decider)
    assert h.responds() == [{"taskToken": "token-1", "decisions": completed("done: x")}]
    h.assert_done()


def test_stop_during_an_empty_poll_returns_without_pausing():
    h = Harness([Flow])
    h.add_empty_poll()
    h.hooks.on_poll_ended = lambda poller: poller.stop()
    run_in_thread(h.decider)
    assert h.fake.sleeps == []
    assert h.names() == ["PollForDecisionTask"]


# -- construction


def test_on_error_must_be_known():
    """One check for the Decider and the pool factory: a ConfigError (exit 78) that names the choices."""
    with pytest.raises(swf.ConfigError) as info:
        Decider(swf.Endpoint(region="us-east-1"), "D", "tl", [Flow], on_error="ignore")
    assert str(info.value) == "on_error = 'ignore': expected one of retry, fail"
    assert info.value.exit_code == 78
    assert check_on_error("fail") == "fail"


def test_workflows_by_dict_and_summary():
    decider = Decider(swf.Endpoint(region="us-east-1"), "D", "tl", {("Flow", "1.0"): Flow})
    assert decider.workflows == {("Flow", "1.0"): Flow}
    assert decider.summary() == "no tasks"
    decider.stats.update({"completed": 2, "stale": 1})
    assert decider.summary() == "completed 2, stale 1"
    assert repr(decider) == "<Decider D/tl>"
    assert decider.kind == "decider"


def test_decision_done_is_importable_from_the_package():
    assert issubclass(DecisionDone, Exception)


def test_decisions_refused_outright_fail_the_execution_once_retries_are_used_up(caplog):
    """Refused decisions (a request over 1 MB, say) are built the same way on every retry: max_decision_retries
    bounds that loop too, instead of burning a task timeout and 3 events per try to the 25,000-event limit."""
    h = Harness([Flow])
    h.add_poll(poll_response([*start_history(), *timed_out_tries(4, 5)]))
    h.stub.add_client_error(
        "respond_decision_task_completed", "ValidationException", "request too large", http_status_code=400
    )
    h.add_respond()

    assert h.decider.run_once() is True

    first, second = h.responds()
    assert first["decisions"][0]["decisionType"] == "CompleteWorkflowExecution"
    (failure,) = second["decisions"]
    assert failure["decisionType"] == "FailWorkflowExecution"
    attributes = failure["failWorkflowExecutionDecisionAttributes"]
    assert attributes["reason"] == "decisions refused by SWF"
    assert "ValidationException" in attributes["details"]
    assert h.hooks.outcomes() == ["workflow-failed"]
    h.assert_done()


def test_decisions_refused_with_retries_left_leave_the_task(caplog):
    h = Harness([Flow])
    h.add_poll(poll_response([*start_history(), *timed_out_tries(4, 2)]))
    h.stub.add_client_error("respond_decision_task_completed", "ValidationException", "too large", http_status_code=400)

    assert h.decider.run_once() is True

    assert len(h.responds()) == 1
    assert h.hooks.outcomes() == ["respond-failed"]
    assert "leaving task: <DecisionTask Flow" in caplog.text and "2 of 5 retries used" in caplog.text
    h.assert_done()
