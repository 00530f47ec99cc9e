"""The named states: what a child does (ChildState), how far the master went to end it (KillStage),
and the restart state machine of a pool.

A pool: STARTING -> RUNNING -> BACKOFF -> FATAL (``PoolHealth``). Pure
logic with an injected clock and random source, so that every edge is
tested with a fake clock. The master asks it two questions, "may I spawn a
child of this pool now?" and "when should I ask again?", and tells it three
things: a child booted, a child exited, time passed.

What counts as a crash: a child that exits without having been asked to (a
stop, a recycle, a scale-down), or that the master had to kill because it
overstayed its deadline. Expected exits never move the state, and neither
does the crash of a child that had been up ``min_uptime``: only failed
starts lead to backoff and FATAL (supervisord's ``startsecs``).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import random


class ChildState(enum.Enum):
    """What a child does, as the master knows it from the child's lines (caravand.protocol).

    The child moves itself: BOOTING -> IDLE once it booted, then among IDLE,
    POLLING, PAGING and WORKING as its poll loop goes. The master only
    records each move, and judges the child late by what it does. The
    values are also the last word of the child's process title (``ps``).
    """

    BOOTING = "booting"  # forked, its poller not built yet: bound by boot_timeout
    IDLE = "idle"  # booted, between polls and tasks: bound by beat_timeout only
    POLLING = "polling"  # in a long poll: bound by its deadline
    PAGING = "paging"  # reading a decision task's further pages: bound by each page's deadline
    WORKING = "working"  # a task in hand: bound by its deadline, if the task has one


class KillStage(enum.Enum):
    """How far the master went to end a child that would not go; it only moves forward.

    Edges (``Child.escalate``, in ``Master.watch_children``):

    - NONE -> ALARMED: a stop's deadline is ALARM_MARGIN away: SIGALRM,
      and the child fails its task in hand and exits.
    - NONE|ALARMED -> ABORTED: overdue (late, silent, not booted): SIGABRT
      dumps its stack; SIGKILL follows after kill_grace.
    - NONE|ALARMED -> KILLED: still running at its stop deadline, or overdue
      while stopped (state T), when no handler can run: SIGKILL.
    - ABORTED -> KILLED: SIGABRT did not end it within kill_grace.

    Whether the child was asked to go (``retiring``) is another question:
    a child may be retiring at any stage, and a hung one is aborted unasked.
    """

    NONE = "none"  # not forced: it may still leave by itself
    ALARMED = "alarmed"  # SIGALRM sent: a task in hand is failed, then it exits
    ABORTED = "aborted"  # SIGABRT sent: its stack is being dumped; SIGKILL at kill_at
    KILLED = "killed"  # SIGKILL sent: only its exit is ahead

    def may_become(self, new: KillStage) -> bool:
        return new in _KILL_EDGES[self]


_KILL_EDGES = {
    KillStage.NONE: {KillStage.ALARMED, KillStage.ABORTED, KillStage.KILLED},
    KillStage.ALARMED: {KillStage.ABORTED, KillStage.KILLED},
    KillStage.ABORTED: {KillStage.KILLED},
    KillStage.KILLED: set(),
}


class PoolState(enum.Enum):
    """Where a pool is in its life; see :class:`PoolHealth` for the edges."""

    STARTING = "starting"  # children spawned, not all booted and settled yet
    RUNNING = "running"  # every wanted child booted and stayed up min_uptime
    BACKOFF = "backoff"  # a child crashed; the next spawn waits until retry_at
    FATAL = "fatal"  # too many crashes in the window; retried after fatal_retry
    STOPPING = "stopping"  # removed or shutting down: no new children


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """How a pool restarts crashed children (one record of the pool's settings)."""

    backoff_base: float = 1.0  # first delay after consecutive crashes, seconds
    backoff_cap: float = 60.0  # no delay is ever longer
    max_restarts: int = 5  # crashes allowed within restart_window...
    restart_window: float = 60.0  # ...before the pool goes FATAL
    fatal_retry: float = 300.0  # a FATAL pool tries again after this long
    min_uptime: float = 5.0  # a child that lived less than this failed to start


class PoolHealth:
    """The restart state of one pool. Edges (each a call to ``change_state``):

    - STARTING -> RUNNING: every wanted child booted and min_uptime passed
      with no crash (``tick``).
    - STARTING|RUNNING|BACKOFF -> BACKOFF: a child failed to start (it died
      before min_uptime, supervisord's ``startsecs``); the next spawn waits
      an exponential delay with full jitter.
    - no edge: a child that had been up min_uptime died. It is replaced at
      once, whatever the state (but FATAL or STOPPING), and it counts toward
      neither backoff nor FATAL: eight children that ran for an hour and die
      together (an OOM kill, an operator) are not a crash loop.
    - BACKOFF -> STARTING: the delay passed (``tick``).
    - any but STOPPING -> FATAL: more than max_restarts crashes within
      restart_window; nothing is spawned.
    - FATAL -> STARTING: fatal_retry passed (``tick``); the crash history is
      forgotten, so the pool gets a fresh window.
    - any -> STOPPING: the pool is removed or the master stops (``stop``).
    """

    def __init__(self, name: str, policy: RestartPolicy, clock, rng=random.random):
        self.name = name
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.state = PoolState.STARTING
        self.since = clock()
        self.crashes: collections.deque[float] = collections.deque()
        self.consecutive = 0  # crashes since the pool last settled
        self.retry_at = 0.0
        self.restarts = 0  # every crash that led to a respawn, for metrics and status
        self.replacements = 0  # children that ran and died: spawned at once, backoff or not
        self.transitions: list[tuple[PoolState, PoolState]] = []

    def __repr__(self):
        return f"<PoolHealth {self.name} {self.state.name}>"

    _ALLOWED = {
        PoolState.STARTING: {PoolState.RUNNING, PoolState.BACKOFF, PoolState.FATAL, PoolState.STOPPING},
        PoolState.RUNNING: {PoolState.BACKOFF, PoolState.FATAL, PoolState.STOPPING},
        PoolState.BACKOFF: {PoolState.STARTING, PoolState.BACKOFF, PoolState.FATAL, PoolState.STOPPING},
        PoolState.FATAL: {PoolState.STARTING, PoolState.STOPPING},
        PoolState.STOPPING: set(),
    }

    def change_state(self, new: PoolState) -> None:
        """The one place the state changes; refuses an edge the diagram lacks."""
        if new not in self._ALLOWED[self.state]:
            raise RuntimeError(f"pool {self.name}: no edge from {self.state.name} to {new.name}")
        self.transitions.append((self.state, new))
        self.state = new
        self.since = self.clock()

    # -- what the master asks

    def may_spawn(self) -> bool:
        """True when a missing child of this pool may be spawned now."""
        if self.state in (PoolState.FATAL, PoolState.STOPPING):
            return False
        return self.replacements > 0 or self.clock() >= self.retry_at

    def spawned(self) -> None:
        """A child was spawned: it used up an immediate replacement, if one was owed."""
        if self.replacements:
            self.replacements -= 1

    def next_check(self) -> float | None:
        """The clock value at which ``tick`` may change something, if any."""
        if self.state is PoolState.BACKOFF:
            return self.retry_at
        if self.state is PoolState.FATAL:
            return self.since + self.policy.fatal_retry
        return None

    # -- what the master tells

    def child_exited(self, *, crashed: bool, uptime: float) -> None:
        """A child is gone; ``crashed`` unless the master had asked it to go."""
        if not crashed or self.state in (PoolState.STOPPING, PoolState.FATAL):
            # FATAL: another child of a pool that already gave up; nothing is
            # respawned until fatal_retry, which starts a fresh history anyway.
            return
        if uptime >= self.policy.min_uptime:
            # It started and served: its death says nothing about the next
            # child's start. Replace it now; no state moves.
            self.restarts += 1
            self.replacements += 1
            return
        # A failed start (a failed spawn among them) owes no immediate
        # replacement any more: what is missing now waits for the backoff.
        self.replacements = 0
        now = self.clock()
        self.crashes.append(now)
        while self.crashes and self.crashes[0] < now - self.policy.restart_window:
            self.crashes.popleft()
        self.consecutive += 1
        if len(self.crashes) > self.policy.max_restarts:
            self.change_state(PoolState.FATAL)
            return
        self.restarts += 1
        ceiling = min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** (self.consecutive - 1))
        self.retry_at = now + self.rng() * ceiling
        self.change_state(PoolState.BACKOFF)

    def tick(self, *, all_booted_for: float | None) -> None:
        """Let time act. ``all_booted_for``: how long every wanted child has been booted (None: not all)."""
        now = self.clock()
        if self.state is PoolState.BACKOFF and now >= self.retry_at:
            self.change_state(PoolState.STARTING)
        elif self.state is PoolState.FATAL and now >= self.since + self.policy.fatal_retry:
            self.crashes.clear()
            self.consecutive = 0
            self.retry_at = 0.0
            self.replacements = 0
            self.change_state(PoolState.STARTING)
        elif (
            self.state is PoolState.STARTING and all_booted_for is not None and all_booted_for >= self.policy.min_uptime
        ):
            self.consecutive = 0
            self.change_state(PoolState.RUNNING)

    def stop(self) -> None:
        if self.state is not PoolState.STOPPING:
            self.change_state(PoolState.STOPPING)
