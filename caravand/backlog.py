"""The backlog counter: one process per master that counts each pool's pending tasks.

The backlog of a task list (``CountPendingDecisionTasks`` /
``CountPendingActivityTasks``) is what autoscaling grows on and what the
``caravand_pool_backlog`` gauge shows. SWF throttles these calls per
account, so they are made once per pool and ``backlog_interval`` by this one
process, never by each child; and never by the master, whose loop makes no
network call. It tells the master each count over a pipe
(``BACKLOG <n> <pool>``, caravand.protocol), and BEATs while it waits, so
that the master can tell a counter stuck on the network from a quiet one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import NoReturn

from caravand import protocol, swf
from caravand.child import BEAT_INTERVAL, become_helper, run_helper

log = logging.getLogger(__name__)

#: Each count ends within this, its retries included (a throttled call is tried again).
COUNT_BUDGET = 10.0
#: The master kills a counter silent for this long (stuck beyond its calls' own timeouts) and forks another.
SILENCE_LIMIT = 3 * COUNT_BUDGET + BEAT_INTERVAL
OPERATIONS = {"decider": "count_pending_decision_tasks", "activity": "count_pending_activity_tasks"}


@dataclasses.dataclass(frozen=True)
class Target:
    """A task list whose backlog is counted, every ``interval`` seconds, for ``pool``."""

    pool: str
    kind: str  # "decider" or "activity"
    domain: str
    task_list: str
    interval: float

    @classmethod
    def of(cls, spec) -> Target:
        return cls(spec.name, spec.kind, spec.domain, spec.task_list, spec.backlog_interval)


def count(client, target: Target) -> int:
    """The task list's pending tasks (SWF stops counting at 1000 and says ``truncated``: 1000 it is)."""
    method = OPERATIONS.get(target.kind)
    if method is None:
        raise swf.CaravanError(f"{target.pool}: a pool of kind {target.kind!r} has no backlog to count")
    answer = getattr(client, method)(domain=target.domain, taskList={"name": target.task_list})
    return int(answer["count"])


class BacklogProcess:
    """The counter, in a child of the master: counts each target when due, forever; never returns."""

    def __init__(
        self, targets: list[Target], endpoint, fd: int, parent_pid: int, *, session=None, clock=time.monotonic,
        sleep=time.sleep, client=None,
    ):  # fmt: skip
        self.targets = targets
        self.endpoint = endpoint
        self.fd = fd
        self.parent_pid = parent_pid
        self.session = session
        self.clock = clock
        self.sleep = sleep
        self.client = client  # built in run() unless given (tests)

    def run(self) -> NoReturn:
        run_helper(self.main, "backlog counter failed")

    def main(self) -> int:
        become_helper(self.parent_pid, "caravand: backlog " + " ".join(t.pool for t in self.targets))
        clients = swf.Clients(self.endpoint, session=self.session or swf.make_session(self.endpoint))
        self.client = swf.BoundedClient(clients, COUNT_BUDGET)
        self.loop()
        return 1  # the loop returns only if it broke

    def loop(self, passes: int | None = None) -> None:
        """Count each target when due, the first at once; ``passes`` bounds it (tests)."""
        due = dict.fromkeys(self.targets, self.clock())
        while passes is None or passes > 0:
            now = self.clock()
            for target in sorted(due, key=due.__getitem__):
                if due[target] > now:
                    break
                started = self.clock()  # later than due when another count was slow
                self.send(protocol.backlog(target.pool, self.count(target)))
                due[target] = max(due[target], started) + target.interval  # never two counts in a row
            self.send(protocol.beat())
            self.sleep(max(0.0, min(BEAT_INTERVAL, min(due.values()) - self.clock())))
            if passes is not None:
                passes -= 1

    def count(self, target: Target) -> int | None:
        try:
            return count(self.client, target)
        except swf.CaravanError as exc:  # throttled past the budget, no such domain, the network...
            log.warning("backlog: %s: %s", target.pool, exc)
            return None

    def send(self, line: bytes) -> None:
        try:
            os.write(self.fd, line)
        except OSError:  # the master is gone: the parent death signal ends us
            pass
