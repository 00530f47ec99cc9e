"""The activity worker's authoring API: ``Activity`` and the ``ActivityTask`` it reads.

An ``Activity`` subclass names its type and default timeouts; its ``run()``
reads ``self.task.input`` (or ``self.task.input_json``) and returns the
result. Returning completes the task (a string as it is, anything else as
JSON); raising fails it, with the exception as reason and the traceback's
tail as details; raising :class:`ActivityCanceled` after a cancel request
answers RespondActivityTaskCanceled.

Long activities call ``self.task.heartbeat(details)``: it records the
progress and returns at once True when the workflow asked for the task to be
canceled (or the task is gone: timed out or closed), as far as the last
heartbeat told. The worker's heartbeat thread sends the latest details at
its own pace. When the type has a heartbeat timeout, that thread also
heartbeats by itself every third of it while ``run()`` is busy.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time

from caravand import swf
from caravand.poller import Backoff
from caravand.registration import type_registration
from caravand.sigmask import start_quiet
from caravand.values import timeout_seconds, truncate

log = logging.getLogger(__name__)

#: Activity class attribute -> RegisterActivityType parameter.
ACTIVITY_DEFAULTS = {
    "default_task_list": "defaultTaskList",
    "default_task_priority": "defaultTaskPriority",
    "default_task_schedule_to_start_timeout": "defaultTaskScheduleToStartTimeout",
    "default_task_start_to_close_timeout": "defaultTaskStartToCloseTimeout",
    "default_task_schedule_to_close_timeout": "defaultTaskScheduleToCloseTimeout",
    "default_task_heartbeat_timeout": "defaultTaskHeartbeatTimeout",
}

#: Heartbeat at this fraction of the heartbeat timeout: a call that fails after
#: its own timeouts can then be retried before SWF times the task out.
HEARTBEAT_FRACTION = 1 / 3
#: Details from run() go out at most this often; a type without heartbeat
#: timeout sends nothing else, and only when run() asks.
DETAILS_INTERVAL = 5.0
#: How long the worker waits for the heartbeat thread (a call in flight) before it answers the task.
HEARTBEAT_JOIN = 2.0
#: Pauses between the retries of a failed heartbeat: full jitter over an
#: exponential ceiling from an eighth of the interval (at most this base) up to
#: half of it (at most this cap); never under half the base, so that a
#: throttled account is not hammered by a run of short draws.
RETRY_BASE = 1.0
RETRY_CAP = 5.0
#: ...and without a heartbeat timeout, where nothing presses.
DETAILS_RETRY_CAP = 30.0
#: Without a heartbeat timeout, a heartbeat call gets an ordinary call's timeouts.
UNBOUNDED_BUDGET = swf.CONNECT_TIMEOUT + swf.CALL_READ_TIMEOUT
#: Another attempt starts only with this much of the budget left (the shortest timeouts a call gets).
MIN_ATTEMPT = swf.MIN_CONNECT_TIMEOUT + swf.MIN_READ_TIMEOUT


class ActivityCanceled(Exception):
    """Raise from ``run()`` to acknowledge a cancel request (RespondActivityTaskCanceled)."""

    def __init__(self, details: str | None = None):
        self.details = details
        super().__init__(details or "canceled")


class ActivityTask:
    """One activity task in hand: its input, and what its heartbeats learned.

    ``heartbeat()`` never calls SWF itself: it leaves the latest details for
    the task's :class:`Heartbeater` and answers from what the last heartbeat
    said, so ``run()`` never waits on the network. ``client_for(budget)``
    gives a one-attempt client whose timeouts fit in ``budget`` seconds
    (without it, ``client`` serves every call); ``clock`` is
    ``time.monotonic`` but in tests.
    """

    def __init__(self, data: dict, client=None, *, client_for=None, clock=time.monotonic):
        self.raw = data
        self.token: str = data["taskToken"]
        self.activity_id: str = data["activityId"]
        self.activity_type: str = data["activityType"]["name"]
        self.activity_version: str = data["activityType"]["version"]
        self.workflow_id: str = data["workflowExecution"]["workflowId"]
        self.run_id: str = data["workflowExecution"]["runId"]
        self.started_event_id: int = data.get("startedEventId", 0)
        self.input: str | None = data.get("input")
        self.cancel_requested = False
        #: True once SWF said the task no longer exists (timed out, closed).
        self.lost = False
        self.clock = clock
        #: When the last heartbeat that SWF accepted was sent (at first: when the task came).
        self.last_heartbeat = clock()
        self._client = client
        self._client_for = client_for
        # Guards the fields below and the flags above; never held across a call.
        self._lock = threading.Lock()
        self._details: str | None = None
        self._asked = 0  # heartbeat() calls so far
        self._told = 0  # ...of which SWF has heard (the last accepted heartbeat carried them)
        self._heartbeater: Heartbeater | None = None
        self._on_demand = False  # start the heartbeater when run() first asks
        self._closed = False  # heartbeats stopped for good: the task is being answered

    def __repr__(self):
        return (
            f"<ActivityTask {self.activity_type} v={self.activity_version} "
            f"id={self.activity_id} workflow={self.workflow_id}>"
        )

    @property
    def input_json(self):
        """The input decoded as JSON (None when there is no input)."""
        return None if self.input is None else json.loads(self.input)

    @property
    def can_call(self) -> bool:
        """False for a task made without a client (a test's): heartbeat() then only reports the flags."""
        return self._client is not None or self._client_for is not None

    def heartbeat(self, details: str | None = None) -> bool:
        """Report progress; True means stop: cancel requested or task lost (as last heard).

        ``details`` (progress, at most 2048 characters: longer is cut) shows
        in the history. Returns at once: the heartbeat thread sends the
        latest details within a few seconds, and what SWF answers shows in
        the next call's return value.
        """
        with self._lock:
            if details is not None:
                self._details = truncate(details, swf.MAX_HEARTBEAT_DETAILS)
            self._asked += 1
            heartbeater = self._heartbeater
            start = self._on_demand and heartbeater is not None and not self._closed
            self._on_demand = self._on_demand and not start
            stop = self.cancel_requested or self.lost
        if heartbeater is not None:
            if start:
                start_quiet(heartbeater)
            else:
                heartbeater.wake()
        return stop

    def start_heartbeats(self, timeout: float | None) -> None:
        """Heartbeat by ourselves every third of ``timeout`` s; with None, only when ``run()`` asks."""
        if not self.can_call:
            return
        heartbeater = Heartbeater(self, timeout)
        with self._lock:
            self._heartbeater = heartbeater
            self._on_demand = not timeout
        if timeout:
            start_quiet(heartbeater)

    def stop_heartbeats(self, bound: float = HEARTBEAT_JOIN) -> None:
        """No more heartbeats: wait up to ``bound`` s for a call in flight, then go on (before answering)."""
        with self._lock:
            self._closed = True
            heartbeater = self._heartbeater
        if heartbeater is not None and not heartbeater.stop(bound):
            log.warning("heartbeat still in flight: %r (answering after %.1f s without it)", self, bound)

    # -- for the Heartbeater

    def pending(self) -> bool:
        """True when run() asked for a heartbeat that SWF has not heard yet."""
        with self._lock:
            return self._asked > self._told

    def call_client(self, budget: float):
        return self._client_for(budget) if self._client_for is not None else self._client

    def snapshot(self) -> tuple[int, str | None]:
        """What a heartbeat sent now carries: run()'s requests so far and the latest details."""
        with self._lock:
            return self._asked, self._details

    def heard(self, sent_at: float, asked: int, cancel_requested: bool) -> None:
        """SWF accepted the heartbeat sent at ``sent_at`` that carried ``asked`` requests."""
        with self._lock:
            self.last_heartbeat = max(self.last_heartbeat, sent_at)
            self._told = max(self._told, asked)
            newly_canceled = cancel_requested and not self.cancel_requested
            self.cancel_requested = self.cancel_requested or cancel_requested
        if newly_canceled:
            log.info("cancel requested: %r (heartbeats go on until it is answered)", self)

    def forget(self, message: str) -> None:
        """SWF no longer knows the task (timed out, closed): nothing more to send."""
        with self._lock:
            self.lost = True
        log.warning("task lost: %r (%s)", self, message)


class Heartbeater(threading.Thread):
    """The heartbeat thread of one task: keeps it alive and sends what ``run()`` reports.

    With a heartbeat ``timeout``, a heartbeat goes out every third of it
    (HEARTBEAT_FRACTION), measured from the last one SWF accepted. Each call
    is one attempt whose timeouts fit in half the time left before the
    timeout; a failed one is retried after a short jittered pause while the
    budget lasts, then at the ordinary pace. Details from ``run()`` go out
    at most every DETAILS_INTERVAL s. Heartbeats go on after a cancel
    request (SWF's timeout still runs if the activity ignores it) and end
    only when the task is gone or ``stop()`` is called. ``wait`` and ``rng``
    are for tests (a fake clock comes with the task).
    """

    def __init__(self, task: ActivityTask, timeout: float | None, *, wait=None, rng=random.random):
        super().__init__(name=f"heartbeat-{task.activity_id}", daemon=True)
        self.task = task
        self.timeout = timeout or None
        self.interval = self.timeout * HEARTBEAT_FRACTION if self.timeout else None
        self.clock = task.clock
        self.stopped = threading.Event()
        self._wake = threading.Event()
        self._wait = wait or self._wait_for_wake
        if self.interval:
            base = min(RETRY_BASE, self.interval / 8)
            self.backoff = Backoff(base=base, cap=min(RETRY_CAP, self.interval / 2), rng=rng)
        else:
            self.backoff = Backoff(base=RETRY_BASE, cap=DETAILS_RETRY_CAP, rng=rng)
        self.last_attempt = -math.inf
        self.retry_at: float | None = None

    def run(self):
        while not self.stopped.is_set() and not self.task.lost:
            try:
                self.step()
            except Exception as exc:
                # Never end silently: without this thread the task times out.
                log.exception("heartbeat error: %r", self.task)
                self.failed(exc)

    def step(self) -> None:
        """One turn: wait until the next heartbeat is due (or run() asks), or send it if it is."""
        due = self.next_due()
        now = self.clock()
        if due is None or due > now:
            self._wait(None if due is None else due - now)
        else:
            self.beat()

    def next_due(self) -> float | None:
        """When the next heartbeat goes out (None: when run() asks for one)."""
        if self.retry_at is not None:
            return self.retry_at
        due = []
        if self.interval:
            due.append(self.task.last_heartbeat + self.interval)
        if self.task.pending():
            due.append(self.last_attempt + DETAILS_INTERVAL)
        return min(due, default=None)

    def budget(self, now: float) -> float:
        """Seconds left before SWF times the task out (without a timeout: an ordinary call's)."""
        if not self.timeout:
            return UNBOUNDED_BUDGET
        return self.task.last_heartbeat + self.timeout - now

    def beat(self) -> None:
        """Send one heartbeat, as one attempt that leaves time for another."""
        sent_at = self.last_attempt = self.clock()
        asked, details = self.task.snapshot()
        budget = self.budget(sent_at)
        try:
            client = self.task.call_client(budget / 2 if self.timeout else budget)
            response = swf.call(client, "record_activity_task_heartbeat", taskToken=self.task.token, details=details)
        except swf.CaravanError as exc:
            if isinstance(exc, swf.SWFError) and exc.code == "UnknownResourceFault":
                self.task.forget(exc.message)
                return
            self.failed(exc)
            return
        self.retry_at = None
        self.backoff.reset()
        self.task.heard(sent_at, asked, bool(response.get("cancelRequested")))

    def failed(self, error: Exception) -> None:
        """Retry soon while the budget lasts; past it, at the ordinary pace, to learn the task's fate."""
        now = self.clock()
        left = self.budget(now)
        delay = max(self.backoff.base / 2, self.backoff.next_delay())
        if self.interval and delay + MIN_ATTEMPT > left:
            delay = max(delay, self.interval)
        self.retry_at = now + delay
        log.warning("heartbeat failed: %r (%s; %.1f s left, retry in %.2f s)", self.task, error, left, delay)

    def wake(self) -> None:
        """run() has news: look again at what is due."""
        self._wake.set()

    def _wait_for_wake(self, seconds: float | None) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def stop(self, bound: float | None = HEARTBEAT_JOIN) -> bool:
        """End the thread; True if it ended within ``bound`` s (a call in flight may hold it)."""
        self.stopped.set()
        self._wake.set()
        if self.ident is None:  # never started
            return True
        self.join(bound)
        return not self.is_alive()


class Activity:
    """Base class of an activity type's worker code.

    Subclass it, set ``name`` and ``version`` (and the ``default_*`` used when
    the type is registered), and write ``run()``. A subclass without a
    ``name`` is an abstract base, never registered or dispatched to.

    ``default_task_start_to_close_timeout`` is also the deadline caravand's
    master holds ``run()`` to (SWF does not tell the worker the value a
    decider scheduled): a longer one chosen at scheduling time needs a
    longer default here, or ``"NONE"``.

    Example::

        class Add(Activity):
            name = "Add"
            version = "1.0"
            default_task_list = "math"
            default_task_start_to_close_timeout = "60"

            def run(self):
                numbers = self.task.input_json
                return {"sum": sum(numbers)}
    """

    name: str | None = None
    version: str | None = None
    description: str | None = None
    default_task_list: str | None = None
    default_task_priority: str | None = None
    default_task_schedule_to_start_timeout: str | None = "NONE"
    default_task_start_to_close_timeout: str | None = "300"
    default_task_schedule_to_close_timeout: str | None = "NONE"
    default_task_heartbeat_timeout: str | None = "NONE"

    def __init__(self, task: ActivityTask):
        self.task = task

    def __repr__(self):
        return f"<Activity {self.name}({self.version})>"

    def run(self):
        raise NotImplementedError(f"{type(self).__name__}.run() is not written")

    @classmethod
    def registration(cls) -> dict:
        """The RegisterActivityType parameters of this type (its name, version, defaults)."""
        return type_registration(cls, ACTIVITY_DEFAULTS)

    @classmethod
    def heartbeat_timeout_seconds(cls) -> float | None:
        """The type's heartbeat timeout in seconds, or None when it has none."""
        timeout = timeout_seconds(cls.default_task_heartbeat_timeout)
        return timeout if timeout is not None and timeout > 0 else None

    @classmethod
    def heartbeat_interval(cls) -> float | None:
        """Seconds between automatic heartbeats, or None when the type has no heartbeat timeout."""
        timeout = cls.heartbeat_timeout_seconds()
        # No floor: SWF's timeouts are whole seconds, and a floor of 1 s would
        # miss every deadline of a 1 s heartbeat timeout.
        return None if timeout is None else timeout * HEARTBEAT_FRACTION

    @classmethod
    def start_to_close_seconds(cls) -> float | None:
        """The type's start-to-close timeout in seconds, or None when it has none."""
        return timeout_seconds(cls.default_task_start_to_close_timeout)
