"""Heartbeats against SWF's heartbeat timer: a simulated timeline on a fake clock, then the real thread.

The timeline tests run a :class:`Heartbeater` in the test's own thread: its
waits move a fake clock, and a simulated SWF side (:class:`FakeSWF`) keeps
the task's heartbeat timer, answers each call from a script (accepted,
throttled, a 500, or a call that never answers and so costs the whole
timeouts it was given), and times the task out as real SWF would.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import botocore.exceptions
import pytest
from helpers import FakeClock, wait_for
from stubs import ScriptedClient, client_error

from caravand import swf
from caravand.activity import DETAILS_INTERVAL, HEARTBEAT_FRACTION, ActivityTask, Heartbeater


def task_data() -> dict:
    return {
        "taskToken": "token-1",
        "activityId": "a1",
        "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
        "activityType": {"name": "Work", "version": "1.0"},
    }


@dataclasses.dataclass
class Call:
    """One heartbeat call as SWF saw it: when, the budget it was given and its timeouts, what it carried."""

    at: float
    budget: float
    timeouts: float
    details: str | None
    step: str
    left: float  # before SWF's heartbeat timeout, when the call came


class FakeSWF:
    """SWF's side of one task's heartbeats, on ``fake`` time.

    ``client_for(budget)`` is the task's client factory: the call it makes
    gets the timeouts :func:`swf.call_timeouts` gives that budget. A step of
    the script: ``"ok"``, ``"throttle"``, ``"500"`` or ``"hang"`` (no answer:
    the call costs its connect and read timeouts, then a ReadTimeoutError).
    Past the heartbeat timeout every call answers UnknownResourceFault.
    ``calls`` records each :class:`Call`.
    """

    LATENCY = 0.05

    def __init__(self, fake: FakeClock, timeout: float | None, *script: str, then: str = "ok"):
        self.fake = fake
        self.timeout = timeout
        self.script = list(script)
        self.then = then
        self.last_heard = fake.now
        self.timed_out_at: float | None = None
        self.cancel_requested = False
        self.calls: list[Call] = []

    def client_for(self, budget: float):
        connect, read = swf.call_timeouts(budget)
        return ScriptedClient(then=lambda params: self.answer(params, budget, connect + read))

    def expired(self, now: float) -> bool:
        if self.timeout is not None and self.timed_out_at is None and now > self.last_heard + self.timeout:
            self.timed_out_at = self.last_heard + self.timeout
        return self.timed_out_at is not None

    def answer(self, params: dict, budget: float, timeouts: float):
        now = self.fake.now
        step = "gone" if self.expired(now) else (self.script.pop(0) if self.script else self.then)
        left = self.last_heard + self.timeout - now if self.timeout else float("inf")
        self.calls.append(Call(now, budget, timeouts, params.get("details"), step, left))
        if step == "hang":
            self.fake.now += timeouts
            return botocore.exceptions.ReadTimeoutError(endpoint_url="http://swf")
        self.fake.now += self.LATENCY
        if step == "gone":
            return client_error("UnknownResourceFault")
        if step == "throttle":
            return client_error("ThrottlingException")
        if step == "500":
            return client_error("InternalFailure", 500)
        self.last_heard = now + self.LATENCY / 2  # SWF's timer restarts when the request arrives
        return {"cancelRequested": self.cancel_requested}

    def accepted(self) -> list[float]:
        return [call.at for call in self.calls if call.step == "ok"]


class Timeline:
    """A Heartbeater run in the test's thread until ``until`` s of fake time, with ``actions`` on the way.

    ``actions`` maps a fake time to what run() does then (a callable of the
    task); reaching one wakes the heartbeater, as run()'s heartbeat() would.
    """

    def __init__(self, timeout: float | None, *script: str, then: str = "ok", rng=lambda: 0.5):
        self.fake = FakeClock()
        self.start = self.fake.now
        self.swf = FakeSWF(self.fake, timeout, *script, then=then)
        self.task = ActivityTask(task_data(), client_for=self.swf.client_for, clock=self.fake)
        self.beater = Heartbeater(self.task, timeout, wait=self.wait, rng=rng)
        self.actions: dict[float, object] = {}
        self.end = self.start

    def at(self, seconds: float, action) -> None:
        self.actions[self.start + seconds] = action

    def wait(self, seconds: float | None) -> None:
        target = self.end if seconds is None else min(self.end, self.fake.now + seconds)
        due = sorted(at for at in self.actions if at <= target)
        if due:  # run() acts before the wait is over: the heartbeater wakes
            self.fake.now = max(self.fake.now, due[0])
            self.actions.pop(due[0])(self.task)
            return
        self.fake.now = target
        if self.fake.now >= self.end:
            self.beater.stopped.set()

    def run(self, until: float) -> Timeline:
        self.end = self.start + until
        self.beater.run()
        return self

    def accepted(self) -> list[float]:
        return [round(at - self.start, 3) for at in self.swf.accepted()]

    def sent(self) -> list[tuple[float, str | None]]:
        return [(round(call.at - self.start, 3), call.details) for call in self.swf.calls]

    def gaps(self) -> list[float]:
        times = [call.at for call in self.swf.calls]
        return [b - a for a, b in zip(times, times[1:], strict=False)]


# -- item 2: on time, retried within the budget, on calls that fit it


def test_heartbeats_go_out_every_third_of_the_timeout():
    line = Timeline(30.0).run(until=65)
    # Before: 0.8 x 30 = 24 s, leaving 6 s for a failed call and its retry.
    assert line.accepted() == [10, 20, 30, 40, 50, 60]
    assert HEARTBEAT_FRACTION == pytest.approx(1 / 3)
    assert line.swf.timed_out_at is None


FAILURES = [("hang",), ("throttle",) * 3, ("500", "throttle"), ("hang", "hang"), ("throttle", "hang", "500")]


@pytest.mark.parametrize(
    ("timeout", "failures"),
    [
        (timeout, failures)
        for timeout in (3.0, 10.0, 30.0, 300.0)
        for failures in FAILURES
        # Not survivable, by arithmetic: a hang and another failure at the shortest timeouts take over 3 s.
        if not (timeout == 3.0 and "hang" in failures and len(failures) > 1)
    ],
    ids=lambda value: "+".join(value) if isinstance(value, tuple) else f"{value:g}s",
)
def test_failed_heartbeats_are_retried_before_the_timeout(timeout, failures):
    """The first heartbeat fails (hangs, throttled, 500) and is retried in time; before, it took the task out."""
    line = Timeline(timeout, *failures).run(until=timeout * 4)
    assert line.swf.timed_out_at is None, f"SWF timed the task out: {line.swf.calls}"
    assert not line.task.lost
    assert line.accepted()[0] < timeout
    # Every call fits in half of what was left of the timeout when it started, so a retry fits after it.
    for call in line.swf.calls:
        assert call.budget <= call.left / 2 + 1e-9
        assert call.timeouts <= max(call.budget, swf.MIN_CONNECT_TIMEOUT + swf.MIN_READ_TIMEOUT) + 1e-9


def test_each_call_gets_timeouts_that_fit_the_budget_left():
    line = Timeline(30.0, "hang", "hang").run(until=40)
    first, second, third = line.swf.calls[:3]
    # At 10 s: 20 s left, the call may use 10; the next one half of what is left then.
    assert first.at - line.start == pytest.approx(10.0)
    assert first.budget == pytest.approx(10.0) and first.timeouts <= 10.0
    assert second.budget == pytest.approx((30 - (second.at - line.start)) / 2)
    assert second.timeouts <= second.budget and third.timeouts <= third.budget
    assert third.step == "ok" and third.at - line.start < 30
    # An ordinary call would have had 3 attempts of 4 s connect + 20 s read.
    assert all(call.timeouts < swf.CONNECT_TIMEOUT + swf.CALL_READ_TIMEOUT for call in line.swf.calls)


@pytest.mark.parametrize("draw", [0.0, 0.5, 1.0])
def test_throttled_heartbeats_back_off_without_a_hot_loop(draw):
    """Throttled for good: short jittered retries while the budget lasts, then the ordinary pace, until lost."""
    line = Timeline(30.0, "ok", then="throttle", rng=lambda: draw).run(until=200)
    interval = 30.0 * HEARTBEAT_FRACTION
    assert line.task.lost  # SWF timed it out at last, and said so: the thread ended by itself
    assert line.fake.now < line.start + 200
    gaps = line.gaps()
    assert min(gaps) >= 1.0 / 2  # never under half the backoff's base, however the jitter draws
    # Between the last accepted heartbeat and the timeout: a handful of calls, not a hot loop.
    throttled = [call for call in line.swf.calls if call.step == "throttle"]
    assert len(throttled) <= 2 * (30.0 - interval)  # at most 2 per second, for the 20 s left
    assert line.swf.timed_out_at == pytest.approx(line.start + 10.025 + 30, abs=0.1)


def test_past_the_budget_retries_come_at_the_ordinary_pace():
    line = Timeline(30.0, "ok", then="500", rng=lambda: 1.0)
    line.swf.timeout = None  # an SWF that never times out: the heartbeats must still not spin
    line.run(until=120)
    calls = [call.at - line.start for call in line.swf.calls]
    late = [b - a for a, b in zip(calls, calls[1:], strict=False) if a > 10.025 + 30]
    assert late and min(late) >= 10.0


def test_heartbeats_go_on_after_a_cancel_request():
    """SWF's timeout still runs when run() ignores a cancel: the heartbeats must too (before, they stopped)."""
    line = Timeline(30.0)
    line.swf.cancel_requested = True
    line.run(until=65)
    assert line.task.cancel_requested
    assert len(line.accepted()) == 6
    assert line.swf.timed_out_at is None


def test_the_thread_ends_when_the_task_is_gone():
    # "gone" answers UnknownResourceFault: the task timed out or was closed.
    line = Timeline(30.0, "ok", then="gone").run(until=1000)
    assert line.task.lost
    assert len(line.swf.calls) == 2
    assert line.fake.now < line.start + 30


# -- item 13: details from run() coalesced and paced


def test_details_are_coalesced_and_sent_at_the_threads_pace():
    line = Timeline(None)  # a type without heartbeat timeout: only what run() asks
    line.at(0, lambda task: [task.heartbeat("1%"), task.heartbeat("2%")])
    line.at(1, lambda task: [task.heartbeat(f"{n}%") for n in range(3, 50)])
    line.at(2, lambda task: task.heartbeat("50%"))
    line.at(30, lambda task: task.heartbeat())  # no details: "am I canceled?" sends the latest again
    line.run(until=100)
    assert line.sent() == [(0, "2%"), (DETAILS_INTERVAL, "50%"), (30, "50%")]


def test_details_go_out_before_the_next_regular_heartbeat():
    line = Timeline(30.0)
    line.at(11, lambda task: task.heartbeat("halfway"))
    line.run(until=26)
    # Regular at 10; the details at 15 (5 s after the last call), not at the next regular one (20);
    # then regular again, 10 s after that, with the latest details.
    assert line.sent() == [(10, None), (15, "halfway"), (25, "halfway")]


def test_heartbeat_answers_what_the_thread_learned():
    line = Timeline(None)
    seen = []
    line.swf.cancel_requested = True
    line.at(0, lambda task: seen.append(task.heartbeat("a")))
    line.at(1, lambda task: seen.append(task.heartbeat("b")))
    line.run(until=10)
    assert seen == [False, True]  # the first call only asked; the heartbeat at 0 learned of the cancel


# -- item 13: the real thread


def blocking_client(started: threading.Event, release: threading.Event):
    def hang(params):
        started.set()
        release.wait(5)
        return {"cancelRequested": False}

    return ScriptedClient(then=hang)


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "heartbeat-a1"]


def test_a_type_without_heartbeat_timeout_starts_its_thread_on_demand():
    client = ScriptedClient(then={"cancelRequested": False})
    task = ActivityTask(task_data(), client)
    task.start_heartbeats(None)
    assert heartbeat_threads() == []
    assert task.heartbeat("first") is False
    wait_for(lambda: client.calls, 5, 0.005, "the details to be sent")
    assert len(heartbeat_threads()) == 1
    task.stop_heartbeats()
    assert heartbeat_threads() == []
    assert client.calls == [("record_activity_task_heartbeat", {"taskToken": "token-1", "details": "first"})]
    task.heartbeat("after the answer")  # starts nothing again
    assert heartbeat_threads() == []


def test_heartbeat_never_waits_on_a_call_in_flight(caplog):
    started, release = threading.Event(), threading.Event()
    task = ActivityTask(task_data(), blocking_client(started, release))
    task.start_heartbeats(None)
    try:
        task.heartbeat("a")
        assert started.wait(5), "no heartbeat call"
        began = time.monotonic()
        assert task.heartbeat("b") is False  # before: blocked on the lock held across the call
        assert time.monotonic() - began < 0.1
        # The answer does not wait for the call either, beyond a bound.
        began = time.monotonic()
        task.stop_heartbeats(bound=0.1)
        assert time.monotonic() - began < 0.5
        assert "heartbeat still in flight" in caplog.text
    finally:
        release.set()
    wait_for(lambda: not heartbeat_threads(), 5, 0.005, "the heartbeat thread to end")


def test_an_exception_in_the_thread_is_logged_and_the_thread_goes_on(caplog):
    caplog.set_level(logging.WARNING, logger="caravand.activity")
    good = ScriptedClient(
        swf.ConfigError("no AWS credentials found"),  # a CaravanError from the call
        then={"cancelRequested": False},
    )
    factories = [RuntimeError("a bug"), good]  # anything else, from building the client

    def client_for(budget):
        factory = factories.pop(0) if len(factories) > 1 else factories[0]
        if isinstance(factory, Exception):
            raise factory
        return factory

    task = ActivityTask(task_data(), client_for=client_for)
    task.start_heartbeats(0.3)  # every 0.1 s
    try:
        wait_for(lambda: len(good.calls) >= 2, 5, 0.005, "a second heartbeat (else the thread died)")
        assert heartbeat_threads() and heartbeat_threads()[0].is_alive()
    finally:
        task.stop_heartbeats()
    assert "heartbeat error" in caplog.text and "RuntimeError: a bug" in caplog.text  # with its traceback
    assert "heartbeat failed" in caplog.text and "no AWS credentials found" in caplog.text
    assert not task.lost
