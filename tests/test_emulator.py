"""The faithful-SWF patches of moto (caravand.emulator), driven in this process on a backend of their own.

Each test states the SWF behaviour it checks and the moto 5.2.5 behaviour it
replaces. Time is a fake wall clock (moto's timestamps follow it) wherever a
timeout is due; only the held polls wait on real time, with deadlines.
"""

from __future__ import annotations

import pickle
import threading
import time

import pytest
from helpers import FakeClock, wait_for

from caravand import emulator

moto_swf = pytest.importorskip("moto.swf.models")
from moto.swf.exceptions import SWFUnknownResourceFault, SWFValidationException  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
ACTIVITY = {"name": "A", "version": "1"}


@pytest.fixture
def clock():
    return FakeClock(now=1_700_000_000.0)


@pytest.fixture
def emu(clock):
    """The patches installed (a 0.2 s hold), and moto put back afterwards: other tests run moto in-process."""
    machine = emulator.install(poll_hold=0.2, clock=clock)
    yield machine
    emulator.uninstall()


class Serialized:
    """A backend whose every call holds the emulator's lock, as the HTTP server's calls do (SWFResponse.call_action)."""

    def __init__(self, backend, lock):
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_lock", lock)

    def __setattr__(self, name, value):  # a state loaded into it
        setattr(self._backend, name, value)

    def __getattr__(self, name):
        value = getattr(self._backend, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return call


@pytest.fixture
def backend(emu):
    return make_backend(emu)


def make_backend(emu):
    """A backend of its own: domain D (retention 1 day), workflow W on list 'decide', activity A on 'work'."""
    backend = Serialized(moto_swf.SWFBackend(REGION, ACCOUNT), emu.lock)
    emu.backends = lambda: [backend]
    backend.register_domain("D", "1")
    backend.register_type("workflow", "D", "W", "1", task_list="decide", default_task_start_to_close_timeout="10",
                          default_execution_start_to_close_timeout="3600", default_child_policy="TERMINATE")  # fmt: skip
    backend.register_type("activity", "D", "A", "1", task_list="work", default_task_schedule_to_start_timeout="30",
                          default_task_schedule_to_close_timeout="300", default_task_start_to_close_timeout="60",
                          default_task_heartbeat_timeout="20")  # fmt: skip
    return backend


def start(backend, workflow_id="w"):
    return backend.start_workflow_execution("D", workflow_id, "W", "1")


def events(execution) -> list[str]:
    return [event.event_type for event in execution.events()]


def schedule(activity_id: str, **timeouts) -> dict:
    return {
        "decisionType": "ScheduleActivityTask",
        "scheduleActivityTaskDecisionAttributes": {"activityId": activity_id, "activityType": ACTIVITY, **timeouts},
    }


def decide(backend, decisions=()):
    """Poll the decision task of 'decide' and complete it with ``decisions``; returns the task."""
    task = backend.poll_for_decision_task("D", "decide")
    assert task is not None, "a decision task was due"
    backend.respond_decision_task_completed(task.task_token, decisions=list(decisions))
    return task


class Poll(threading.Thread):
    """A poll on its own thread, as werkzeug serves each request: its result and how long it took."""

    def __init__(self, backend, kind: str, task_list: str):
        super().__init__(daemon=True)
        self.call = getattr(backend, f"poll_for_{kind}_task")
        self.task_list = task_list
        self.result = None
        self.seconds: float | None = None

    def run(self):
        started = time.monotonic()
        self.result = self.call("D", self.task_list)
        self.seconds = time.monotonic() - started


def held(emu, kind: str, task_list: str, count: int = 1):
    """Wait until ``count`` polls are held on that list (waiting on its condition)."""
    key = (ACCOUNT, REGION, "D", kind, task_list)

    def waiting():
        condition = emu.conditions.get(key)
        return condition is not None and len(condition._waiters) >= count

    wait_for(waiting, timeout=5, interval=0.005, message=f"{count} poll(s) held on {kind}/{task_list}")
    return emu.conditions[key]


# -- 1. long polls


def test_a_task_scheduled_during_a_hold_reaches_the_held_poll_at_once(emu, backend, clock):
    """SWF holds an empty poll up to 60 s and answers it when a task comes (moto: sleeps 1 s, returns empty)."""
    emulator.install(poll_hold=30, clock=clock)
    start(backend)
    decide(backend, [])  # the first decision task, out of the way
    poll = Poll(backend, "activity", "work")
    poll.start()
    held(emu, "activity", "work")
    scheduled = time.monotonic()
    # A signal schedules a decision task; its answer schedules the activity the poll waits for.
    backend.signal_workflow_execution("D", "go", "w")
    decide(backend, [schedule("a1")])
    poll.join(timeout=5)
    assert poll.result is not None and poll.result.activity_id == "a1"
    assert time.monotonic() - scheduled < 0.5  # of a 30 s hold


def test_an_empty_poll_is_answered_when_its_hold_ends(emu, backend):
    start(backend)
    decide(backend, [])
    started = time.monotonic()
    assert backend.poll_for_activity_task("D", "work") is None
    assert 0.2 <= time.monotonic() - started < 2


def test_a_task_wakes_the_polls_of_its_own_list_only(emu, backend, clock):
    """A condition per (domain, kind, list): waking every poll on any change made 50 signals take 7.7 s."""
    emulator.install(poll_hold=30, clock=clock)
    start(backend)
    decide(backend, [])
    other, work = Poll(backend, "activity", "other"), Poll(backend, "activity", "work")
    other.start()
    work.start()
    other_condition = held(emu, "activity", "other")
    held(emu, "activity", "work")
    woken = []
    other_condition.notify_all = lambda: woken.append("other")  # type: ignore[method-assign]
    backend.signal_workflow_execution("D", "go", "w")
    decide(backend, [schedule("a1")])
    work.join(timeout=5)
    assert work.result is not None
    assert woken == [] and other.is_alive()
    del other_condition.notify_all  # type: ignore[attr-defined]
    emu.release_polls()  # the other poll ends now, not in 30 s
    other.join(timeout=5)
    assert not other.is_alive() and other.result is None


# -- 2. release


def test_release_answers_held_polls_empty_and_new_ones_at_once_for_a_moment(emu, backend, clock):
    emulator.install(poll_hold=30, clock=clock)
    polls = [Poll(backend, "activity", "work") for _ in range(3)]
    for poll in polls:
        poll.start()
    held(emu, "activity", "work", count=3)
    emu.release_polls()
    for poll in polls:
        poll.join(timeout=5)
        assert not poll.is_alive() and poll.result is None and poll.seconds is not None and poll.seconds < 1
    # Sent before the release, arrived after it: not held.
    started = time.monotonic()
    assert backend.poll_for_activity_task("D", "work") is None
    assert time.monotonic() - started < 0.1
    # Once the window passed, a poll is held again.
    emu.release_until = time.monotonic()
    late = Poll(backend, "activity", "work")
    late.start()
    held(emu, "activity", "work")
    emu.release_polls()
    late.join(timeout=5)


# -- 3. once


def test_a_start_and_two_signals_before_any_poll_schedule_one_decision_task(emu, backend):
    """SWF: one DecisionTaskScheduled; moto made one per event (3)."""
    execution = start(backend)
    backend.signal_workflow_execution("D", "a", "w")
    backend.signal_workflow_execution("D", "b", "w")
    assert events(execution).count("DecisionTaskScheduled") == 1
    assert execution.open_counts["openDecisionTasks"] == 1


def test_events_during_a_started_decision_task_schedule_one_when_it_completes(emu, backend):
    """SWF schedules the next decision task when the started one completes; moto scheduled one at once."""
    execution = start(backend)
    task = backend.poll_for_decision_task("D", "decide")
    backend.signal_workflow_execution("D", "a", "w")
    backend.signal_workflow_execution("D", "b", "w")
    assert events(execution)[-2:] == ["WorkflowExecutionSignaled", "WorkflowExecutionSignaled"]
    assert execution.open_counts["openDecisionTasks"] == 1
    backend.respond_decision_task_completed(task.task_token, decisions=[])
    assert events(execution)[-2:] == ["DecisionTaskCompleted", "DecisionTaskScheduled"]
    assert execution.open_counts["openDecisionTasks"] == 1
    assert backend.poll_for_decision_task("D", "decide") is not None


def test_200_activity_completions_before_a_decision_schedule_one_decision_task(emu, backend):
    """The issue's count: 200 completions made 201 DecisionTaskScheduled on moto, 2 on SWF (the start's and one)."""
    execution = start(backend)
    decide(backend, [schedule(f"a{i}") for i in range(200)])
    for _ in range(200):
        task = backend.poll_for_activity_task("D", "work")
        backend.respond_activity_task_completed(task.task_token, result="ok")
    assert events(execution).count("DecisionTaskScheduled") == 2


@pytest.mark.parametrize("kind", ["decision", "activity"])
def test_concurrent_pollers_get_each_task_once(emu, backend, kind):
    """4 pollers, 100 tasks: each delivered once (moto: 25 and 10 of 200 delivered twice over HTTP)."""
    if kind == "decision":
        for i in range(100):
            start(backend, f"w{i}")
        task_list = "decide"
    else:
        start(backend)
        decide(backend, [schedule(f"a{i}") for i in range(100)])
        task_list = "work"
    got: list[str] = []
    poll = getattr(backend, f"poll_for_{kind}_task")

    def poller():
        while (task := poll("D", task_list)) is not None:
            got.append(task.task_token)

    threads = [threading.Thread(target=poller, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 100 and len(set(got)) == 100


# -- 4. timeouts


def scheduled_activity(backend, **timeouts):
    execution = start(backend)
    decide(backend, [schedule("a1", **timeouts)])
    return execution


def timed_out(execution) -> list[str]:
    return [e.event_attributes["timeoutType"] for e in execution.events() if e.event_type == "ActivityTaskTimedOut"]


def test_the_backlog_counts_the_tasks_that_wait_not_those_in_hand(emu, backend):
    """CountPending*Tasks, as SWF counts them: what autoscaling grows on (moto counted started ones too)."""
    start(backend, "one")
    start(backend, "two")
    assert backend.count_pending_decision_tasks("D", "decide") == 2
    decide(backend, [schedule("a1"), schedule("a2"), schedule("a3")])
    assert backend.count_pending_decision_tasks("D", "decide") == 1  # one started and completed: the other waits
    assert backend.count_pending_activity_tasks("D", "work") == 3
    assert backend.poll_for_activity_task("D", "work") is not None
    assert backend.count_pending_activity_tasks("D", "work") == 2  # one in hand
    assert backend.count_pending_activity_tasks("D", "other") == 0


def test_schedule_to_start_times_out_a_task_nobody_polled(emu, backend, clock):
    execution = scheduled_activity(backend, scheduleToStartTimeout="30")
    clock.advance(29)
    emu.tick([backend])
    assert timed_out(execution) == []
    clock.advance(1)
    emu.tick([backend])
    assert timed_out(execution) == ["SCHEDULE_TO_START"]
    assert execution.open_counts["openActivityTasks"] == 0  # moto left it at 1
    assert events(execution)[-1] == "DecisionTaskScheduled"
    assert backend.poll_for_activity_task("D", "work") is None  # never handed out after


def test_start_to_close_times_out_a_started_task_whose_worker_died(emu, backend, clock):
    """A killed worker's task is retried after its start-to-close timeout (moto: never, locally)."""
    execution = scheduled_activity(backend, startToCloseTimeout="60", heartbeatTimeout="NONE")
    assert backend.poll_for_activity_task("D", "work") is not None
    clock.advance(59)
    emu.tick([backend])
    assert timed_out(execution) == []
    clock.advance(1)
    emu.tick([backend])
    assert timed_out(execution) == ["START_TO_CLOSE"]
    assert execution.open_counts["openActivityTasks"] == 0


def test_the_heartbeat_clock_starts_when_the_task_starts_not_when_it_was_scheduled(emu, backend, clock):
    execution = scheduled_activity(backend, heartbeatTimeout="20")
    clock.advance(25)  # waited in the list longer than its heartbeat timeout (within its schedule-to-start)
    task = backend.poll_for_activity_task("D", "work")
    clock.advance(19)
    emu.tick([backend])
    assert timed_out(execution) == []  # moto: timed out at once, its clock ran from scheduling
    backend.record_activity_task_heartbeat(task.task_token)
    clock.advance(19)
    emu.tick([backend])
    assert timed_out(execution) == []
    clock.advance(1)
    emu.tick([backend])
    assert timed_out(execution) == ["HEARTBEAT"]


def test_schedule_to_close_bounds_a_task_that_heartbeats(emu, backend, clock):
    execution = scheduled_activity(backend, scheduleToCloseTimeout="100", startToCloseTimeout="NONE")
    task = backend.poll_for_activity_task("D", "work")
    for _ in range(9):
        clock.advance(10)
        backend.record_activity_task_heartbeat(task.task_token)
        emu.tick([backend])
    assert timed_out(execution) == []
    clock.advance(10)
    emu.tick([backend])
    assert timed_out(execution) == ["SCHEDULE_TO_CLOSE"]


def test_the_earliest_due_timeout_wins(emu, backend, clock):
    """Start-to-close (due at 50) and heartbeat (due at 20) both passed when the tick comes: HEARTBEAT."""
    execution = scheduled_activity(backend, startToCloseTimeout="50", heartbeatTimeout="20")
    backend.poll_for_activity_task("D", "work")
    clock.advance(500)
    emu.tick([backend])
    assert timed_out(execution) == ["HEARTBEAT"]
    timeout = next(e for e in execution.events() if e.event_type == "ActivityTaskTimedOut")
    assert timeout.event_timestamp == pytest.approx(1_700_000_000.0 + 20)


@pytest.mark.parametrize("respond", ["completed", "failed", "heartbeat"])
def test_a_late_activity_respond_gets_unknown_resource(emu, backend, clock, respond):
    """SWF: UnknownResourceFault (moto: ValueError, an HTTP 500). Seen even before a tick processed it."""
    execution = scheduled_activity(backend, startToCloseTimeout="60", heartbeatTimeout="NONE")
    task = backend.poll_for_activity_task("D", "work")
    clock.advance(61)
    call = {
        "completed": lambda: backend.respond_activity_task_completed(task.task_token, result="late"),
        "failed": lambda: backend.respond_activity_task_failed(task.task_token, reason="late"),
        "heartbeat": lambda: backend.record_activity_task_heartbeat(task.task_token),
    }[respond]
    with pytest.raises(SWFUnknownResourceFault):
        call()
    assert timed_out(execution) == ["START_TO_CLOSE"]


def test_a_late_decision_respond_gets_unknown_resource_and_a_new_decision_task_is_scheduled(emu, backend, clock):
    execution = start(backend)
    task = backend.poll_for_decision_task("D", "decide")
    clock.advance(11)  # its start-to-close is 10 s
    emu.tick([backend])
    assert "DecisionTaskTimedOut" in events(execution)
    assert execution.open_counts["openDecisionTasks"] == 1  # the new one; moto counted 2
    with pytest.raises(SWFUnknownResourceFault):
        backend.respond_decision_task_completed(task.task_token, decisions=[])
    assert backend.poll_for_decision_task("D", "decide") is not None


def test_a_token_never_given_is_a_validation_error(emu, backend):
    with pytest.raises(SWFValidationException):
        backend.respond_activity_task_completed("no-such-token")


def test_a_decision_moto_cannot_carry_out_is_refused_before_the_task_completes(emu, backend):
    """moto completed the task, then raised NotImplementedError: the execution was stuck."""
    execution = start(backend)
    task = backend.poll_for_decision_task("D", "decide")
    with pytest.raises(SWFValidationException, match="ContinueAsNewWorkflowExecution"):
        backend.respond_decision_task_completed(
            task.task_token, decisions=[{"decisionType": "ContinueAsNewWorkflowExecution"}]
        )
    assert task.state == "STARTED" and "DecisionTaskCompleted" not in events(execution)
    backend.respond_decision_task_completed(task.task_token, decisions=[])  # the decider can still answer


# -- 5. no leak, retention


def test_swf_models_are_not_kept_for_ever(emu, backend, clock):
    """moto kept every model it made (a Timeout per execution per call): 45 MB in 30 s with 600 executions."""
    for model in (moto_swf.Timeout, moto_swf.HistoryEvent, moto_swf.WorkflowExecution):
        model.instances_tracked = []
    for i in range(20):
        start(backend, f"w{i}")
    for _ in range(20):
        backend.describe_workflow_execution("D", None, "w0")
        backend.count_pending_activity_tasks("D", "work")
    clock.advance(5)
    emu.tick([backend])
    for model in (moto_swf.Timeout, moto_swf.HistoryEvent, moto_swf.WorkflowExecution):
        assert model.instances_tracked == []


def test_closed_executions_are_purged_past_their_domains_retention(emu, backend, clock):
    for name in ("old", "recent", "open"):
        start(backend, name)
    backend.terminate_workflow_execution("D", "old")
    old = backend.domains[0].workflow_executions[0]
    old.close_timestamp = clock() - 86400 - 1  # closed a day (the retention) and a second ago
    backend.terminate_workflow_execution("D", "recent")
    backend.domains[0].workflow_executions[1].close_timestamp = clock()
    emu.tick([backend])
    domain = backend.domains[0]
    assert [e.workflow_id for e in domain.workflow_executions] == ["recent", "open"]
    assert all(t.workflow_execution is not old for t in domain.decision_tasks)


# -- 6. state


def test_the_state_survives_a_dump_and_load_with_its_tasks_and_timers(emu, backend, clock, tmp_path):
    execution = start(backend)
    decide(backend, [schedule("a1"), {"decisionType": "StartTimer",
                                      "startTimerDecisionAttributes": {"timerId": "t", "startToFireTimeout": "3600"}}])  # fmt: skip
    due = execution._timers["t"].background_timer.due
    assert due == pytest.approx(clock() + 3600)
    activity = backend.poll_for_activity_task("D", "work")
    path = str(tmp_path / "state.pickle")
    emu.state_path = path
    emu.save(path)
    execution._timers["t"].cancel()
    assert list(tmp_path.iterdir()) == [tmp_path / "state.pickle"]  # no temporary file left

    fresh = Serialized(moto_swf.SWFBackend(REGION, ACCOUNT), emu.lock)
    assert emu.load(path, backend_for=lambda account, region: fresh) is None
    loaded = fresh.domains[0].workflow_executions[0]
    assert events(loaded) == events(execution)
    timer = loaded._timers["t"]
    assert timer.is_alive() and timer.background_timer.due == pytest.approx(due)
    timer.cancel()
    # The task started before the restart is answered after it.
    fresh.respond_activity_task_completed(activity.task_token, result="done")
    assert events(loaded)[-2:] == ["ActivityTaskCompleted", "DecisionTaskScheduled"]


def test_a_timer_due_while_the_endpoint_was_down_fires_once_all_is_loaded(emu, backend, clock, tmp_path):
    execution = start(backend)
    decide(backend, [{"decisionType": "StartTimer",
                      "startTimerDecisionAttributes": {"timerId": "t", "startToFireTimeout": "60"}}])  # fmt: skip
    execution._timers["t"].cancel()
    data = emu.dumps([backend])
    clock.advance(120)
    path = tmp_path / "state.pickle"
    path.write_bytes(data)
    fresh = Serialized(moto_swf.SWFBackend(REGION, ACCOUNT), emu.lock)
    assert emu.load(str(path), backend_for=lambda account, region: fresh) is None
    loaded = fresh.domains[0].workflow_executions[0]
    wait_for(lambda: "TimerFired" in events(loaded), timeout=5, message="the overdue timer to fire")
    assert events(loaded)[-2:] == ["TimerFired", "DecisionTaskScheduled"]


def test_a_state_of_another_moto_version_is_discarded_with_a_warning(emu, backend, tmp_path):
    path = tmp_path / "state.pickle"
    header = {"format": emulator.STATE_FORMAT, "moto": "0.0.1", "saved": 0}
    path.write_bytes(pickle.dumps(header) + b"whatever a foreign moto wrote")
    fresh = moto_swf.SWFBackend(REGION, ACCOUNT)
    warning = emu.load(str(path), backend_for=lambda account, region: fresh)
    assert warning is not None
    assert "saved by moto 0.0.1" in warning and "discarded" in warning
    assert fresh.domains == []


def test_an_unreadable_state_is_discarded_with_a_warning(emu, tmp_path):
    path = tmp_path / "state.pickle"
    path.write_bytes(b"not a pickle")
    warning = emu.load(str(path))
    assert warning is not None and "unreadable" in warning
    assert emu.load(str(tmp_path / "absent.pickle")) is None  # no file yet: nothing to say


def test_the_state_is_saved_after_changes_at_most_once_a_second(emu, backend, tmp_path, monkeypatch):
    path = tmp_path / "state.pickle"
    emu.state_path = str(path)
    saves = []
    monkeypatch.setattr(emu, "save", lambda where: saves.append(where) or setattr(emu, "saved_at", time.monotonic()))
    emu.saved_changes = emu.changes
    emu.save_if_changed()
    assert saves == []  # nothing changed
    start(backend)
    emu.save_if_changed()
    start(backend, "w2")
    emu.save_if_changed()  # within the second
    assert saves == [str(path)]


# -- install


def test_install_fails_loudly_when_moto_lacks_a_patched_function(monkeypatch):
    monkeypatch.delattr(moto_swf.SWFBackend, "_process_timeouts")
    original_poll = moto_swf.SWFBackend.poll_for_decision_task
    with pytest.raises(emulator.MotoMismatch, match="SWFBackend._process_timeouts"):
        emulator.install()
    assert moto_swf.SWFBackend.poll_for_decision_task is original_poll  # nothing left half-patched
    assert emulator._emulator is None


def test_uninstall_puts_moto_back(clock):
    original = moto_swf.SWFBackend.poll_for_activity_task
    emulator.install(clock=clock)
    assert moto_swf.SWFBackend.poll_for_activity_task is not original
    emulator.uninstall()
    assert moto_swf.SWFBackend.poll_for_activity_task is original
    assert "__new__" not in moto_swf.WorkflowExecution.__dict__


# -- caravanctl local-endpoint


def test_local_endpoint_holds_and_keeps_as_its_flags_else_the_ini_say(tmp_path, monkeypatch):
    from caravand import ctl, embedded

    served = []
    monkeypatch.setattr(embedded, "serve", lambda port, **options: served.append(options) or 0)
    ini = tmp_path / "caravan.ini"
    ini.write_text("[caravand]\nendpoint_url = embedded\npoll_timeout = 5\nembedded_state = run/state.pickle\n")
    assert ctl.main(["local-endpoint"]) == 0
    assert ctl.main(["-c", str(ini), "local-endpoint"]) == 0
    assert ctl.main(["-c", str(ini), "local-endpoint", "--poll-hold", "20", "--state", "/elsewhere"]) == 0
    assert [(o["poll_hold"], o["state"]) for o in served] == [
        (60.0, None),  # SWF's hold; nothing kept
        (5.0, str(tmp_path / "run" / "state.pickle")),  # the ini's, its state file beside it
        (20.0, "/elsewhere"),
    ]
    assert ctl.main(["local-endpoint", "--poll-hold", "61"]) == 2  # longer than SWF's: a usage error
