"""The activity worker's authoring API: ``Activity`` and the ``ActivityTask`` it reads.

An ``Activity`` subclass names its type and default timeouts; its ``run()``
reads ``self.task.input`` (or ``self.task.input_json``) and returns the
result. Returning completes the task (a string as it is, anything else as
JSON); raising fails it, with the exception as reason and the traceback's
tail as details; raising :class:`ActivityCanceled` after a cancel request
answers RespondActivityTaskCanceled.

Long activities call ``self.task.heartbeat(details)``: it reports progress
and returns True when the workflow asked for the task to be canceled (or the
task is gone: timed out or closed). When the type has a heartbeat timeout,
the worker also heartbeats by itself while ``run()`` is busy.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from caravand import swf
from caravand.workflow import truncate, type_registration

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

#: Heartbeat at this fraction of the heartbeat timeout, and no more often.
HEARTBEAT_FRACTION = 0.8


class ActivityCanceled(Exception):
    """Raise from ``run()`` to acknowledge a cancel request (RespondActivityTaskCanceled)."""

    def __init__(self, details: str | None = None):
        self.details = details
        super().__init__(details or "canceled")


class ActivityTask:
    """One activity task in hand: its input and a way to heartbeat.

    ``heartbeat()`` is safe to call from ``run()`` while the worker's own
    heartbeat thread runs: both go through one lock.
    """

    def __init__(self, data: dict, client=None):
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
        self._client = client
        self._lock = threading.Lock()
        self.last_heartbeat = time.monotonic()

    def __repr__(self):
        return (
            f"<ActivityTask {self.activity_type} v={self.activity_version} "
            f"id={self.activity_id} workflow={self.workflow_id}>"
        )

    @property
    def input_json(self):
        """The input decoded as JSON (None when there is no input)."""
        return None if self.input is None else json.loads(self.input)

    def heartbeat(self, details: str | None = None) -> bool:
        """Tell SWF the task is alive; True means stop: cancel requested or task lost.

        ``details`` (progress, at most 2048 characters) shows in the history.
        """
        if self._client is None:
            return self.cancel_requested
        with self._lock:
            if self.lost:
                return True
            try:
                response = swf.call(
                    self._client,
                    "record_activity_task_heartbeat",
                    taskToken=self.token,
                    details=truncate(details, swf.MAX_HEARTBEAT_DETAILS),
                )
            except swf.SWFError as exc:
                if exc.code == "UnknownResourceFault":
                    log.warning("task lost: %r (%s)", self, exc.message)
                    self.lost = True
                    return True
                # A failed heartbeat is not fatal: the next one may pass.
                log.warning("heartbeat failed: %r (%s)", self, exc)
                return self.cancel_requested
            self.last_heartbeat = time.monotonic()
            if response.get("cancelRequested") and not self.cancel_requested:
                log.info("cancel requested: %r", self)
                self.cancel_requested = True
            return self.cancel_requested or self.lost


class Heartbeater(threading.Thread):
    """Heartbeats an ActivityTask every ``interval`` s unless ``run()`` just did."""

    def __init__(self, task: ActivityTask, interval: float):
        super().__init__(name=f"heartbeat-{task.activity_id}", daemon=True)
        self.task = task
        self.interval = interval
        self.stopped = threading.Event()

    def run(self):
        last_attempt = 0.0
        while not self.stopped.wait(self._due_in(last_attempt)):
            if time.monotonic() - self.task.last_heartbeat >= self.interval * 0.99:
                last_attempt = time.monotonic()
                if self.task.heartbeat():
                    return

    def _due_in(self, last_attempt: float) -> float:
        """Seconds to the next heartbeat; after a failed one, a quarter interval, not a hot retry."""
        due = self.task.last_heartbeat + self.interval
        if last_attempt > self.task.last_heartbeat:  # the last attempt failed
            due = max(due, last_attempt + self.interval / 4)
        return max(0.05, due - time.monotonic())

    def stop(self):
        self.stopped.set()
        self.join()


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
    def heartbeat_interval(cls) -> float | None:
        """Seconds between automatic heartbeats, or None when the type has no heartbeat timeout."""
        timeout = cls.default_task_heartbeat_timeout
        if timeout is None or str(timeout).upper() == "NONE":
            return None
        # No floor: SWF's timeouts are whole seconds, and a floor of 1 s would
        # miss every deadline of a 1 s heartbeat timeout.
        interval = float(timeout) * HEARTBEAT_FRACTION
        return interval if interval > 0 else None

    @classmethod
    def start_to_close_seconds(cls) -> float | None:
        timeout = cls.default_task_start_to_close_timeout
        if timeout is None or str(timeout).upper() == "NONE":
            return None
        return float(timeout)
