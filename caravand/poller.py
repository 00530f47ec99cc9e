"""What the decision and activity poll loops share: the loop, backoff, hooks, stop.

A poller polls one task list of one domain, hands each task to the code that
handles it, and answers SWF. It is written for real SWF first:

- a poll can be held 60 s by SWF; ``stop()`` never cuts it short: the poll
  in flight ends by itself, and a task it brings is still handled and
  answered before ``run_forever()`` returns;
- an empty poll has no ``taskToken``; one that came back much faster than a
  long poll would (the emulator answers after 1 s) is followed by a short
  pause with jitter, so that no loop ever spins hot;
- throttling, 5xx and connection errors are retried with capped exponential
  backoff and full jitter; the loop never dies of an SWF error;
- a respond that SWF refuses with ``UnknownResourceFault`` means the task
  timed out or was answered already (the emulator may even hand one task
  to two pollers): a stale task, counted, not an error.

:class:`Hooks` lets the daemon observe the loop (its heartbeat to the master
and its metrics) without touching it.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

from caravand import swf

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)

#: An empty poll quicker than this did not wait on the server like a long poll.
FAST_EMPTY_POLL = 2.0
#: ...and is followed by a pause that brings the cycle to about this long.
MIN_EMPTY_CYCLE = 1.0
#: A respond whose task has no known deadline is retried this long at most.
RESPOND_UNKNOWN_DEADLINE = 600.0
#: Pauses between the attempts of a respond: short at first, capped, with full jitter.
RESPOND_BACKOFF_BASE = 0.25
RESPOND_BACKOFF_CAP = 10.0
#: A failed poll waits at most this long before the next (full jitter below it): an endpoint back
#: from an outage is polled again within seconds, and each child tries about once in 2 s meanwhile.
POLL_RETRY_CAP = 4.0
#: ...but throttling waits longer: a fleet must not keep its account's bucket empty.
THROTTLED_POLL_RETRY_CAP = 30.0
#: Another respond attempt starts only with this much time left (the shortest timeouts a call gets).
MIN_ATTEMPT = swf.MIN_CONNECT_TIMEOUT + swf.MIN_READ_TIMEOUT


#: Polls that fail at least this many times in a row, over at least
#: GIVE_UP_SECONDS, with an error no retry can fix (a missing or deprecated
#: domain, access denied, a validation error, missing credentials) end the
#: loop with PollerGaveUp: a pool that reports ready and does nothing helps
#: nobody, and under the daemon the pool backs off, then goes FATAL. The
#: time bound spares a brief outage (an IAM change spreading, an instance
#: metadata hiccup): every child of a pool sees it at once.
GIVE_UP_AFTER = 5
GIVE_UP_SECONDS = 60.0


class PollerGaveUp(swf.CaravanError):
    """The poll keeps failing with an error that no retry can fix; the message says which and why."""


class Backoff:
    """Exponential backoff with full jitter, capped: delay = U(0, min(cap, base * 2**n)).

    Full jitter spreads a fleet's retries apart (AWS Architecture Blog,
    "Exponential Backoff And Jitter"); ``reset()`` after a success.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng=random.random):
        self.base = base
        self.cap = cap
        self.rng = rng
        self.attempts = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempts))
        self.attempts = min(self.attempts + 1, 32)
        return self.rng() * ceiling

    def reset(self) -> None:
        self.attempts = 0


class Hooks:
    """Observer of a poll loop; every method is a no-op here. Override what you need.

    Deadlines are ``time.monotonic()`` values (or None: no known bound).
    Outcomes of a task: ``completed``, ``failed``, ``canceled``,
    ``workflow-failed``, ``stale``, ``unknown-type``, ``error`` (left to
    time out), ``respond-failed``, ``abandoned`` (history unreadable).

    ``paging_started`` comes between ``poll_started`` and ``poll_ended`` when
    a decision task's history spans pages: once before each request for a
    further page (each attempt), with a fresh deadline that covers that
    request, its retries and the pause after it. The poll's own deadline no
    longer applies from then on (a task that came late in a held poll may
    have many pages to read).
    """

    def poll_started(self, poller, deadline: float) -> None:
        pass

    def paging_started(self, poller, deadline: float) -> None:
        pass

    def poll_ended(self, poller, got_task: bool, seconds: float) -> None:
        pass

    def task_started(self, poller, task, deadline: float | None) -> None:
        pass

    def task_ended(self, poller, task, outcome: str, seconds: float) -> None:
        pass

    def poll_failed(self, poller, error: swf.CaravanError, throttled: bool) -> None:
        pass

    def poll_result(self, poller, result: str, seconds: float) -> None:
        """After ``poll_ended``: ``task``, ``empty``, ``error`` or ``throttled`` (for counting)."""


class Fanout(Hooks):
    """Several hooks as one: each event goes to every one of them, in order."""

    def __init__(self, *hooks: Hooks):
        self.hooks = hooks

    def poll_started(self, poller, deadline):
        for hook in self.hooks:
            hook.poll_started(poller, deadline)

    def paging_started(self, poller, deadline):
        for hook in self.hooks:
            hook.paging_started(poller, deadline)

    def poll_ended(self, poller, got_task, seconds):
        for hook in self.hooks:
            hook.poll_ended(poller, got_task, seconds)

    def task_started(self, poller, task, deadline):
        for hook in self.hooks:
            hook.task_started(poller, task, deadline)

    def task_ended(self, poller, task, outcome, seconds):
        for hook in self.hooks:
            hook.task_ended(poller, task, outcome, seconds)

    def poll_failed(self, poller, error, throttled):
        for hook in self.hooks:
            hook.poll_failed(poller, error, throttled)

    def poll_result(self, poller, result, seconds):
        for hook in self.hooks:
            hook.poll_result(poller, result, seconds)


def default_identity() -> str:
    """``host:pid``, as SWF's console and history show who took a task."""
    return f"{socket.gethostname()}:{os.getpid()}"[: swf.MAX_IDENTITY]


class Poller:
    """Base of :class:`~caravand.decider.Decider` and :class:`~caravand.activity_worker.ActivityWorker`.

    Subclasses set ``kind`` and write ``poll_once()`` (one poll: the task
    data, or None) and ``handle(data)`` (run it and answer SWF). Clients are
    built in ``start()``, never in ``__init__``, so that a poller may be
    created before ``fork()`` and started after it.
    """

    kind = "poller"
    #: The clients of calls that must fit a deadline (built in ``start()``; None: ``client`` serves).
    clients: swf.Clients | None = None

    def __init__(
        self,
        endpoint: swf.Endpoint,
        domain: str,
        task_list: str,
        *,
        identity: str | None = None,
        hooks: Hooks | None = None,
        register: bool = True,
        clock=time.monotonic,
        sleep=None,
        rng=random.random,
    ):
        self.endpoint = endpoint
        self.domain = domain
        self.task_list = task_list
        self.identity = identity or default_identity()
        self.hooks = hooks or Hooks()
        self.register = register
        self.clock = clock
        self.rng = rng
        self.backoff = Backoff(rng=rng)
        self.unfixable_errors = 0  # polls failed in a row with an error no retry can fix
        self.unfixable_since = 0.0  # when the first of them came
        self.stats: collections.Counter = collections.Counter()
        self.stopping = False
        self._wake = threading.Event()
        self._answer_idle = threading.Event()  # clear while a respond is in flight
        #: Why SWF (or botocore) refused the last answer outright, if it did: no retry could fix it.
        self.refusal: swf.CaravanError | None = None
        self._answer_idle.set()
        self._sleep = sleep or self._wake.wait
        self._client = None
        self._session: boto3.Session | None = None
        self._client_lock = threading.Lock()
        self.poll_client = None
        #: True only inside the long poll itself, where nothing is in hand yet:
        #: the one place a fast stop may abandon (see caravand.child).
        self.abortable = False

    def __repr__(self):
        return f"<{type(self).__name__} {self.domain}/{self.task_list}>"

    # -- life

    def start(self, session=None, poll_client=None) -> None:
        """Build the clients (after fork; from ``session`` if given) and register the types if asked.

        ``poll_client``: one the master built before fork, from ``session``, for this endpoint.
        """
        self._session = session or swf.make_session(self.endpoint)
        self.clients = swf.Clients(self.endpoint, self._session)
        self.poll_client = poll_client or swf.make_client(self.endpoint, poll=True, session=self._session)
        if self.register:
            self.register_types()

    @property
    def client(self):
        """The client of ordinary calls (history pages, registration), built on first use.

        Not at boot: a child's first need is its poll, and one client less
        is a quarter of a restart (a few ms of the ~20).
        """
        if self._client is None and self._session is not None:
            with self._client_lock:  # the heartbeat thread may want it too
                if self._client is None:
                    self._client = swf.make_client(self.endpoint, session=self._session)
        return self._client

    @client.setter
    def client(self, value) -> None:
        self._client = value

    def register_types(self) -> None:
        raise NotImplementedError

    def run_forever(self) -> None:
        """Start, then poll and handle tasks until ``stop()``; returns when stopped."""
        if self.client is None:
            self.start()
        log.info("polling: %s/%s as %s", self.domain, self.task_list, self.identity)
        while not self.stopping:
            self.run_once()
        log.info("stopped: %s/%s (%s)", self.domain, self.task_list, self.summary())

    def stop(self) -> None:
        """Ask the loop to end after the poll in flight and the task in hand.

        Safe to call twice, and from a signal handler: it only sets flags.
        """
        self.stopping = True
        self._wake.set()

    def summary(self) -> str:
        return ", ".join(f"{key} {count}" for key, count in sorted(self.stats.items())) or "no tasks"

    # -- one turn of the loop

    def run_once(self) -> bool:
        """One poll, and the task it brought if any; True if there was a task."""
        started = self.clock()
        self.hooks.poll_started(self, started + self.endpoint.poll_read_timeout)
        try:
            data = self.poll_once()
        except swf.CaravanError as exc:
            elapsed = self.clock() - started
            self.hooks.poll_ended(self, False, elapsed)
            throttled = isinstance(exc, swf.SWFError) and exc.code in swf.THROTTLING_CODES
            self.hooks.poll_result(self, "throttled" if throttled else "error", elapsed)
            self._poll_failed(exc)
            return False
        elapsed = self.clock() - started
        self.hooks.poll_ended(self, bool(data), elapsed)
        self.hooks.poll_result(self, "task" if data else "empty", elapsed)
        self.backoff.reset()
        self.unfixable_errors = 0
        if not data:
            self.stats["empty_polls"] += 1
            if elapsed < FAST_EMPTY_POLL and not self.stopping:
                self._sleep(max(0.0, MIN_EMPTY_CYCLE - elapsed) + self.rng() * 0.25)
            return False
        self.handle(data)
        # Under systemd or a pipe, output is block-buffered: show each task's now.
        sys.stdout.flush()
        sys.stderr.flush()
        return True

    def poll_once(self) -> dict | None:
        raise NotImplementedError

    def long_poll(self, method: str, **params) -> dict:
        """The poll SWF may hold for 60 s; ``abortable`` while it waits, not after."""
        self.abortable = True
        try:
            return swf.call(
                self.poll_client,
                method,
                domain=self.domain,
                taskList={"name": self.task_list},
                identity=self.identity,
                **params,
            )
        finally:
            self.abortable = False

    def handle(self, data: dict) -> None:
        raise NotImplementedError

    def _poll_failed(self, exc: swf.CaravanError) -> None:
        if swf.is_retryable(exc):
            self.unfixable_errors = 0
        else:
            if self.unfixable_errors == 0:
                self.unfixable_since = self.clock()
            self.unfixable_errors += 1
            lasted = self.clock() - self.unfixable_since
            if self.unfixable_errors >= GIVE_UP_AFTER and lasted >= GIVE_UP_SECONDS:
                raise PollerGaveUp(
                    f"polling {self.domain}/{self.task_list} failed {self.unfixable_errors} times in a row "
                    f"over {lasted:.0f} s with an error no retry can fix: {exc}"
                )
        throttled = isinstance(exc, swf.SWFError) and exc.code in swf.THROTTLING_CODES
        self.stats["throttled" if throttled else "poll_errors"] += 1
        self.hooks.poll_failed(self, exc, throttled)
        self.backoff.cap = THROTTLED_POLL_RETRY_CAP if throttled else POLL_RETRY_CAP
        delay = self.backoff.next_delay()
        level = logging.WARNING if throttled or self.backoff.attempts <= 3 else logging.ERROR
        log.log(level, "poll failed: %s/%s: %s (retry in %.1f s)", self.domain, self.task_list, exc, delay)
        if not self.stopping:
            self._sleep(delay)

    def respond(self, task, method: str, outcome: str, *, deadline: float | None = None, **params) -> str:
        """Answer SWF for ``task``; returns the outcome (``stale`` or ``respond-failed`` on refusal).

        The answer carries finished work: throttling, 5xx and network errors
        are retried (capped backoff, full jitter) until ``deadline`` (a
        ``clock()`` time: the task's timeout, after which SWF would refuse
        it anyway; None: unknown, at most RESPOND_UNKNOWN_DEADLINE). A stop
        does not cut this short. Each attempt's timeouts fit in half the
        time left, so that one more attempt always fits before the deadline.
        """
        self._answer_idle.clear()
        self.refusal = None
        try:
            return self._respond(task, method, outcome, deadline, **params)
        finally:
            self._answer_idle.set()

    def wait_for_answer(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for an answer in flight (finished work) to end; True if none is left.

        A stop's deadline (SIGALRM) must not cut a respond of finished work
        that is being retried: it waits for it within its margin first.
        """
        return self._answer_idle.wait(timeout)

    def _respond(self, task, method: str, outcome: str, deadline: float | None, **params) -> str:
        if deadline is None:
            deadline = self.clock() + RESPOND_UNKNOWN_DEADLINE
        backoff = Backoff(base=RESPOND_BACKOFF_BASE, cap=RESPOND_BACKOFF_CAP, rng=self.rng)
        attempt = 0
        while True:
            attempt += 1
            try:
                client = self.call_client((deadline - self.clock()) / 2)
                swf.call(client, method, taskToken=task.token, **params)
                return outcome
            except swf.CaravanError as exc:
                # Not only SWFError: botocore refuses a malformed decision (UsageError)
                # before sending it, and that must not end the loop either.
                error = exc
            if isinstance(error, swf.SWFError) and error.code == "UnknownResourceFault":
                log.warning("stale task: %r (%s)", task, error.message)
                return "stale"
            if not swf.is_retryable(error):
                log.error("respond failed: %r: %s", task, error)
                self.refusal = error
                return "respond-failed"
            delay = backoff.next_delay()
            if self.clock() + delay + MIN_ATTEMPT > deadline:
                log.error("respond failed: %r: %s (%d attempts, the task's deadline is reached)", task, error, attempt)
                return "respond-failed"
            self._respond_retried(task, error, attempt, delay)

    def call_client(self, budget: float):
        """A one-attempt call client whose timeouts fit in ``budget`` seconds (``client`` if none was built)."""
        if self.clients is None:
            return self.client
        return self.clients.within(budget)

    def _respond_retried(self, task, error: swf.CaravanError, attempt: int, delay: float) -> None:
        throttled = isinstance(error, swf.SWFError) and error.code in swf.THROTTLING_CODES
        self.stats["respond_throttled" if throttled else "respond_retries"] += 1
        log.warning("respond failed: %r: %s (attempt %d, retry in %.2f s)", task, error, attempt, delay)
        if self._sleep == self._wake.wait:
            # Not the wake event: stop() sets it, and a stop must not turn these pauses into a hot loop.
            time.sleep(delay)
        else:
            self._sleep(delay)

    def finish(self, task, outcome: str, started: float) -> None:
        self.stats[outcome] += 1
        self.hooks.task_ended(self, task, outcome, self.clock() - started)
