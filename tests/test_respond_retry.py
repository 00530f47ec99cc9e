"""Poller.respond: an answer carries finished work, so it is retried until the task's deadline.

Retried: throttling, 5xx, connection errors and timeouts (capped backoff,
full jitter). Not retried: UnknownResourceFault (the task is stale) and
what no retry can fix (validation, access denied, a malformed request).
On a scripted client and a fake clock, then on a scripted endpoint.
"""

from __future__ import annotations

import time
import types

import botocore.exceptions
import pytest
from endpoints import ScriptedEndpoint
from helpers import FakeClock
from stubs import NOWHERE, ScriptedClient, client_error

from caravand import poller, swf
from caravand.activity_worker import ActivityWorker

TASK = types.SimpleNamespace(token="token-1")
DONE = {}


def worker(*script, then=None, rng=lambda: 1.0, **kwargs) -> tuple[ActivityWorker, FakeClock, list[float]]:
    """An ActivityWorker whose call client answers from ``script`` on a fake clock; also the times of its calls."""
    fake = FakeClock()
    times: list[float] = []

    def timed(step):
        def answer(params):
            times.append(fake.now)
            return step

        return answer

    w = ActivityWorker(
        swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"),
        "D",
        "acts",
        [],
        clock=fake,
        sleep=fake.sleep,
        rng=rng,
        **kwargs,
    )
    w.client = ScriptedClient(*[timed(step) for step in script], then=None if then is None else timed(then))
    return w, fake, times


def respond(w, deadline=None):
    return w.respond(TASK, "respond_activity_task_completed", "completed", deadline=deadline, result="r")


def throttled(code="ThrottlingException"):
    return client_error(code, 400, "RespondActivityTaskCompleted")


def test_throttling_5xx_and_network_errors_are_retried_until_the_answer_passes():
    w, fake, times = worker(
        throttled(),
        throttled("LimitExceededException"),
        client_error("InternalFailure", 500),
        client_error("ServiceUnavailable", 503),
        botocore.exceptions.EndpointConnectionError(endpoint_url=NOWHERE),
        botocore.exceptions.ReadTimeoutError(endpoint_url=NOWHERE),
        botocore.exceptions.ConnectionClosedError(endpoint_url=NOWHERE),
        DONE,
    )
    # Before: the first error was final ("respond-failed") and the result thrown away.
    assert respond(w, deadline=fake.now + 120) == "completed"
    assert len(w.client.calls) == 8
    assert all(params == {"taskToken": "token-1", "result": "r"} for _, params in w.client.calls)
    assert fake.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]  # capped at 10 s (jitter drawn at 1.0)
    assert (w.stats["respond_throttled"], w.stats["respond_retries"]) == (2, 5)


def test_full_jitter_spreads_the_pauses():
    w, fake, _ = worker(throttled(), throttled(), DONE, rng=lambda: 0.25)
    assert respond(w, deadline=fake.now + 60) == "completed"
    assert fake.sleeps == [0.0625, 0.125]


def test_respond_gives_up_at_the_deadline(caplog):
    w, fake, times = worker(then=throttled())
    started = fake.now
    assert respond(w, deadline=started + 30) == "respond-failed"
    assert fake.now <= started + 30
    assert times[-1] <= started + 30 - poller.MIN_ATTEMPT
    assert 5 <= len(times) <= 10  # 0.25, 0.5, 1, 2, 4, 8, ... then the deadline
    assert "the task's deadline is reached" in caplog.text


def test_an_unknown_deadline_is_bounded():
    w, fake, times = worker(then=throttled())
    started = fake.now
    assert respond(w) == "respond-failed"
    assert started + poller.RESPOND_UNKNOWN_DEADLINE - 10 <= fake.now <= started + poller.RESPOND_UNKNOWN_DEADLINE


def test_the_first_attempt_is_made_even_past_the_deadline():
    w, fake, times = worker(DONE)
    assert respond(w, deadline=fake.now - 5) == "completed"  # SWF decides; it may still know the task
    w, fake, times = worker(throttled())
    assert respond(w, deadline=fake.now - 5) == "respond-failed"
    assert len(times) == 1 and fake.sleeps == []


def test_unknown_resource_stops_at_once_even_after_retries():
    w, fake, times = worker(throttled(), client_error("UnknownResourceFault"), then=DONE)
    assert respond(w, deadline=fake.now + 60) == "stale"
    assert len(times) == 2


@pytest.mark.parametrize(
    "error",
    [
        client_error("ValidationException"),
        client_error("AccessDeniedException"),
        client_error("OperationNotPermittedFault"),
        botocore.exceptions.NoCredentialsError(),
        botocore.exceptions.ParamValidationError(report="Invalid type for parameter result"),
    ],
    ids=lambda error: type(error).__name__ + getattr(error, "response", {}).get("Error", {}).get("Code", ""),
)
def test_errors_no_retry_can_fix_stop_at_once(error):
    w, fake, times = worker(error, then=DONE)
    assert respond(w, deadline=fake.now + 60) == "respond-failed"
    assert len(times) == 1 and fake.sleeps == []


def test_a_stop_does_not_cut_the_retries_short(monkeypatch):
    """stop() wakes the poll loop's pauses; a respond's pauses go on (and do not spin)."""
    w, fake, times = worker(throttled(), throttled(), DONE)
    w.stop()
    assert respond(w, deadline=fake.now + 60) == "completed"
    assert fake.sleeps == [0.25, 0.5]

    # Without an injected sleep, the poller's pause is its wake event, which stop() has set.
    w, fake, times = worker(throttled(), DONE)
    w._sleep = w._wake.wait
    slept = []
    monkeypatch.setattr(poller.time, "sleep", slept.append)
    w.stop()
    assert respond(w, deadline=fake.now + 60) == "completed"
    assert slept == [0.25]


class RecordingClients:
    def __init__(self, client, clock):
        self.client, self.clock = client, clock
        self.asked: list[tuple[float, float]] = []

    def within(self, budget):
        self.asked.append((self.clock(), budget))
        return self.client


def test_each_attempt_fits_half_the_time_left():
    w, fake, times = worker(throttled(), throttled(), throttled(), DONE)
    w.clients = RecordingClients(w.client, fake)
    deadline = fake.now + 20
    assert respond(w, deadline=deadline) == "completed"
    assert [budget for _, budget in w.clients.asked] == [(deadline - at) / 2 for at, _ in w.clients.asked]
    assert [budget for _, budget in w.clients.asked] == [10.0, 9.875, 9.625, 9.125]


def test_start_builds_the_clients_from_one_session():
    w = ActivityWorker(swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"), "D", "acts", [], register=False)
    assert w.call_client(5) is None  # not started: the (absent) ordinary client
    w.start()
    assert w.clients.session is not None
    one = w.call_client(9.9)
    assert one is w.call_client(9.5) and one is not w.client
    assert one.meta.config.retries["total_max_attempts"] == 1
    assert one.meta.config.connect_timeout + one.meta.config.read_timeout <= 9.5


# -- on the wire


def test_respond_on_the_wire_through_throttling_a_500_and_a_request_never_answered():
    with ScriptedEndpoint("throttle", "500", "hang") as server:
        w = ActivityWorker(server.endpoint(), "D", "acts", [], register=False, rng=lambda: 0.01)
        w.start()
        began = time.monotonic()
        # 1.6 s to the deadline: the hung attempt gets 0.25 s to connect and 0.5 s to read.
        assert respond(w, deadline=began + 1.6) == "completed"
        elapsed = time.monotonic() - began
    assert server.operations() == ["RespondActivityTaskCompleted"] * 4
    assert all(request.body == {"taskToken": "token-1", "result": "r"} for request in server.requests)
    assert elapsed < 1.6


def test_wait_for_answer_holds_while_a_respond_is_in_flight():
    """SIGALRM at a stop's deadline waits for an answer of finished work being retried, within its margin."""
    import threading

    from caravand.poller import Poller

    poller = Poller(swf.Endpoint(region="us-east-1"), "D", "t")
    assert poller.wait_for_answer(0) is True  # nothing in flight
    entered, release = threading.Event(), threading.Event()

    def slow_respond(task, method, outcome, deadline, **params):
        entered.set()
        release.wait(5)
        return outcome

    poller._respond = slow_respond
    answering = threading.Thread(target=poller.respond, args=(None, "m", "completed"))
    answering.start()
    assert entered.wait(5)
    assert poller.wait_for_answer(0.05) is False  # in flight: the deadline thread waits
    release.set()
    assert poller.wait_for_answer(5) is True
    answering.join(5)
