"""Autoscaling: how many children a pool with ``processes = MIN..MAX`` should have, from its backlog.

Celery's ``--autoscale`` grows on the work a worker has already taken;
an SWF pool can see the work nobody has taken yet: the task list's backlog
(``CountPendingDecisionTasks`` / ``CountPendingActivityTasks``, counted by
one process per host, caravand.backlog). So:

- **up** when the backlog per child stays above ``scale_up_backlog`` for
  ``scale_up_after`` seconds: straight to the size that backlog asks for
  (``ceil(backlog / scale_up_backlog)``, at least one more, at most MAX);
- **down** by one when at least one child was spare (not working) the
  whole time for ``scale_down_after`` seconds, and no task waited: the pool
  would have done the same work with one child fewer;
- at most one step per ``scale_cooldown``, whatever asks for it (TTIN and
  TTOU too), so that a step's effect is seen before the next.

The master asks ``decide`` when it manages its pools and applies the answer; a child
scaled down is retired like any other (SIGTERM: its poll returns and what it
brings is run), never killed. Pure logic on an injected clock: tests drive
it with a fake one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Step:
    """One scaling decision: the new target, which way, and why (for the log and the count)."""

    target: int
    direction: str  # "up" or "down"
    reason: str  # "backlog", "idle", "ttin", "ttou"
    detail: str  # for the log line: the figures that decided it


class Autoscaler:
    """The scaling state of one pool; ``spec`` is its PoolSpec (bounds and scale_* settings)."""

    def __init__(self, spec, clock: Callable[[], float]):
        self.spec = spec
        self.clock = clock
        self.backlog: int | None = None  # the last count; None: unknown (not counted yet, or it failed)
        self.pressure_since: float | None = None  # since when every count was above scale_up_backlog per child
        self.spare_since: float | None = None  # since when at least one child was never busy, and none waited
        self.last_step = -math.inf

    def counted(self, backlog: int | None, target: int) -> None:
        """A count of the backlog came (None: it failed: what we knew no longer holds)."""
        now = self.clock()
        self.backlog = backlog
        # A pool at zero has no child to share the backlog: one waiting task is pressure.
        threshold = self.spec.scale_up_backlog * target if target else 0
        if backlog is None or backlog <= threshold:
            self.pressure_since = None
        elif self.pressure_since is None:
            self.pressure_since = now
        if backlog:  # a task waited: no child was spare
            self.spare_since = None

    def observe(self, busy: int, target: int) -> None:
        """``busy`` children work (or page a history) now, of ``target``: told on every change of either."""
        if busy >= target:
            self.spare_since = None
        elif self.spare_since is None:
            self.spare_since = self.clock()

    def decide(self, target: int) -> Step | None:
        """The step to take now, if any; the caller applies it (``stepped``)."""
        spec, now = self.spec, self.clock()
        if now - self.last_step < spec.scale_cooldown:
            return None
        if self.pressure_since is not None and now - self.pressure_since >= spec.scale_up_after:
            assert self.backlog is not None  # pressure comes from a count
            if target < spec.scale_max:
                wanted = math.ceil(self.backlog / spec.scale_up_backlog)
                new = min(spec.scale_max, max(target + 1, wanted))
                per_child = self.backlog / max(target, 1)
                detail = (
                    f"backlog {self.backlog}, {per_child:.1f} per child, above {spec.scale_up_backlog:g} per child "
                    f"for {now - self.pressure_since:.0f} s"
                )
                return Step(new, "up", "backlog", detail)
        if self.spare_since is not None and now - self.spare_since >= spec.scale_down_after:
            if target > spec.processes:
                detail = f"a child was spare for {now - self.spare_since:.0f} s and no task waited"
                return Step(target - 1, "down", "idle", detail)
        return None

    def stepped(self) -> None:
        """A step was taken (by ``decide``, TTIN or TTOU): measure afresh, and cool down."""
        now = self.clock()
        self.last_step = now
        self.pressure_since = None
        self.spare_since = None

    def bound(self, target: int) -> int:
        """``target`` within the pool's bounds (after a reload changed them)."""
        return min(self.spec.scale_max, max(self.spec.processes, target))
