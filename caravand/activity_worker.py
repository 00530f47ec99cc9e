"""The activity task poll loop: run the Activity, heartbeat meanwhile, answer.

Every task received is answered: completed with the result, failed with the
exception (or with a clear reason when the result is over SWF's size limit
or cannot be encoded), canceled on :class:`ActivityCanceled`. Only a task
that SWF already forgot (timed out, closed) goes unanswered, as a stale task.
An answer that meets throttling or a network error is retried until the
task's deadline (see :meth:`Poller.respond`): it carries finished work.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback

from caravand import registration, swf
from caravand.activity import Activity, ActivityCanceled, ActivityTask
from caravand.loader import load_classes
from caravand.poller import Poller
from caravand.values import truncate

log = logging.getLogger(__name__)

#: How long failing the task in hand may take at a stop: the master sends
#: SIGALRM 10 s before its SIGKILL, and the process must flush and exit in the rest.
FAIL_IN_HAND_BUDGET = 8.0


def encode_result(value) -> str | None:
    """A run()'s return value as SWF's result: str as is, None as none, the rest as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


class ActivityWorker(Poller):
    """Polls one activity task list and runs the matching Activity class."""

    kind = "activity"

    def __init__(self, endpoint: swf.Endpoint, domain: str, task_list: str, activities, **kwargs) -> None:
        super().__init__(endpoint, domain, task_list, **kwargs)
        self.activities: dict[tuple[str, str], type[Activity]] = (
            dict(activities) if isinstance(activities, dict) else {(a.name, a.version): a for a in activities}
        )
        self.task: ActivityTask | None = None  # the task in hand, if any
        self.deadline: float | None = None  # ...and when SWF times it out (clock() time), if known
        self._answer_lock = threading.Lock()
        self._answered = False

    @classmethod
    def from_modules(cls, endpoint, domain, task_list, modules, **kwargs) -> ActivityWorker:
        return cls(endpoint, domain, task_list, load_classes(modules, Activity), **kwargs)

    def register_types(self) -> None:
        registration.register_types(self.client, self.domain, "activity", self.activities.values())

    def poll_once(self) -> dict | None:
        data = self.long_poll("poll_for_activity_task")
        return data if data.get("taskToken") else None

    def handle(self, data: dict) -> None:
        task = ActivityTask(data, self.client, client_for=self.call_client)
        activity_class = self.activities.get((task.activity_type, task.activity_version))
        started = self.clock()
        timeout = activity_class.start_to_close_seconds() if activity_class else None
        deadline = None if timeout is None else started + timeout
        self.hooks.task_started(self, task, deadline)
        self.task, self.deadline, self._answered = task, deadline, False
        try:
            outcome = self.perform(task, activity_class)
        finally:
            self.task = self.deadline = None
        self.finish(task, outcome, started)

    def perform(self, task: ActivityTask, activity_class: type[Activity] | None) -> str:
        """Run ``task`` and answer it; returns the outcome."""
        if activity_class is None:
            served = ", ".join(f"{n} {v}" for n, v in sorted(self.activities)) or "none"
            log.error("unknown activity type: %r (this worker serves: %s)", task, served)
            return self.answer_failed(
                task,
                "unknown-activity-type",
                f"no worker for {task.activity_type} {task.activity_version} on {self.identity}",
                outcome="unknown-type",
            )
        log.info("working: %r", task)
        task.start_heartbeats(activity_class.heartbeat_timeout_seconds())
        try:
            return self.run_and_answer(task, activity_class)
        finally:
            # Only once answered: while the answer of finished work is retried
            # (throttled, reconnecting), SWF's heartbeat timeout still runs.
            task.stop_heartbeats()

    def run_and_answer(self, task: ActivityTask, activity_class: type[Activity]) -> str:
        try:
            result = activity_class(task).run()
        except ActivityCanceled as canceled:
            return self.answer(task, "respond_activity_task_canceled", "canceled", details=canceled.details)
        except Exception as exc:
            log.exception("activity error: %r in %s.run()", task, activity_class.__name__)
            return self.answer_failed(task, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        try:
            encoded = encode_result(result)
        except (TypeError, ValueError) as exc:
            return self.answer_failed(task, "result-not-encodable", f"{activity_class.__name__}.run() returned {exc}")
        if encoded is not None and len(encoded) > swf.MAX_INPUT:
            log.error("result too large: %r (%d characters)", task, len(encoded))
            return self.answer_failed(
                task,
                "result-too-large",
                f"{activity_class.__name__}.run() returned {len(encoded)} characters; "
                f"SWF accepts at most {swf.MAX_INPUT}: store large results elsewhere and return a reference",
            )
        return self.answer(task, "respond_activity_task_completed", "completed", result=encoded)

    def answer_failed(self, task, reason: str, details: str | None, outcome: str = "failed", **kwargs) -> str:
        return self.answer(
            task,
            "respond_activity_task_failed",
            outcome,
            reason=truncate(reason, swf.MAX_REASON),
            details=truncate(details, swf.MAX_INPUT, keep="tail"),
            **kwargs,
        )

    def answer(self, task: ActivityTask, method: str, outcome: str, *, deadline: float | None = None, **params) -> str:
        """Answer once: a task already answered (``fail_task_in_hand``) or lost is not answered again.

        Retried until ``deadline``, else until the task's own (from its
        class's start-to-close timeout).
        """
        with self._answer_lock:
            if self._answered:
                return "abandoned"
            self._answered = True
        if task.lost:
            return "stale"
        if deadline is None:
            deadline = self.deadline
        return self.respond(task, method, outcome, deadline=deadline, **params)

    def fail_task_in_hand(self, reason: str = "worker-shutdown", budget: float = FAIL_IN_HAND_BUDGET) -> bool:
        """Fail the task being worked on now, so SWF retries it at once instead of after a timeout.

        For a stop that reached its deadline; may be called from another
        thread while ``run()`` goes on. Returns within about ``budget`` s:
        each attempt's timeouts fit in what is left of it, and a throttled
        or failed one is retried while it lasts. True if a task was failed.
        """
        task = self.task
        if task is None:
            return False
        outcome = self.answer_failed(
            task, reason, f"{self.identity} stopped before the task finished", deadline=self.clock() + budget
        )
        log.warning("failed task in hand: %r (%s, %s)", task, reason, outcome)
        return outcome == "failed"
