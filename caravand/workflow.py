"""The decider's authoring API: ``Workflow`` and the ``DecisionTask`` it reads.

Compatible with the seed's API: a workflow written for ``caravan`` runs after
changing only its import line. A ``Workflow`` subclass names its type and
defaults as class attributes; its ``run()`` reads ``self.task`` (the whole
history of the execution) and adds decisions, or raises ``DecisionDone`` /
``WorkflowFailure`` (usually through ``task.decision_done()`` /
``task.fail()``).

Events are kept as SWF sent them; each one also carries its
``...EventAttributes`` dict under the key ``attributes`` (the same dict, not a
copy), so nothing of the raw data is lost.
"""

from __future__ import annotations

import dataclasses
import json
import pprint

from caravand.registration import type_registration
from caravand.swf import MAX_INPUT, MAX_REASON
from caravand.values import NONE, attributes_of, truncate

#: Workflow class attribute -> RegisterWorkflowType parameter.
WORKFLOW_DEFAULTS = {
    "default_task_start_to_close_timeout": "defaultTaskStartToCloseTimeout",
    "default_execution_start_to_close_timeout": "defaultExecutionStartToCloseTimeout",
    "default_task_list": "defaultTaskList",
    "default_task_priority": "defaultTaskPriority",
    "default_child_policy": "defaultChildPolicy",
    "default_lambda_role": "defaultLambdaRole",
}


class PayloadTooLarge(ValueError):
    """A decision's input, result or control is over SWF's limit; raised by the helper that builds it.

    SWF would refuse the whole answer, and cutting the payload would hand on
    broken data (half a JSON document): only a reason or details may be cut.
    """

    def __init__(self, decision: str, field: str, size: int, limit: int = MAX_INPUT):
        self.decision = decision
        self.field = field
        self.size = size
        self.limit = limit
        super().__init__(
            f"{decision} {field} is {size} characters, over SWF's limit of {limit}: "
            f"store it elsewhere (S3, a database) and pass a reference"
        )


def checked_payload(decision: str, field: str, value, limit: int = MAX_INPUT):
    """``value`` unchanged, or PayloadTooLarge if it is longer than ``limit`` characters."""
    if value is not None and len(str(value)) > limit:
        raise PayloadTooLarge(decision, field, len(str(value)), limit)
    return value


class DecisionDone(Exception):
    """Raised to end ``run()`` early; the decisions added so far are sent."""


class WorkflowFailure(Exception):
    """Raised to fail the execution: FailWorkflowExecution with reason/details."""

    def __init__(self, reason: str, details: str = "-"):
        self.reason = reason
        self.details = details
        super().__init__(f"{reason} ({details})")


@dataclasses.dataclass
class TaskState:
    """What the history says of one activity, Lambda function or timer, by its id.

    ``status`` is the last event's verb: ``scheduled``, ``started``,
    ``completed``, ``failed``, ``timed_out``, ``canceled``, ``fired``, or
    ``schedule_failed`` / ``start_failed`` when SWF refused the decision.
    """

    id: str
    name: str | None = None
    version: str | None = None
    status: str = "scheduled"
    input: str | None = None
    control: str | None = None
    result: str | None = None
    reason: str | None = None
    details: str | None = None
    timeout_type: str | None = None
    scheduled_event_id: int | None = None

    @property
    def closed(self) -> bool:
        return self.status not in ("scheduled", "started")

    @property
    def succeeded(self) -> bool:
        return self.status in ("completed", "fired")


# Event type -> (kind, status). "kind" tells which table the event updates.
_TRACKED = {
    "ActivityTaskScheduled": ("activity", "scheduled"),
    "ScheduleActivityTaskFailed": ("activity", "schedule_failed"),
    "ActivityTaskStarted": ("activity", "started"),
    "ActivityTaskCompleted": ("activity", "completed"),
    "ActivityTaskFailed": ("activity", "failed"),
    "ActivityTaskTimedOut": ("activity", "timed_out"),
    "ActivityTaskCanceled": ("activity", "canceled"),
    "LambdaFunctionScheduled": ("lambda", "scheduled"),
    "ScheduleLambdaFunctionFailed": ("lambda", "schedule_failed"),
    "LambdaFunctionStarted": ("lambda", "started"),
    "StartLambdaFunctionFailed": ("lambda", "start_failed"),
    "LambdaFunctionCompleted": ("lambda", "completed"),
    "LambdaFunctionFailed": ("lambda", "failed"),
    "LambdaFunctionTimedOut": ("lambda", "timed_out"),
    "TimerStarted": ("timer", "scheduled"),
    "StartTimerFailed": ("timer", "schedule_failed"),
    "TimerFired": ("timer", "fired"),
    "TimerCanceled": ("timer", "canceled"),
}


class DecisionTask:
    """One decision task: the execution's whole history and the decisions to send.

    Seed API: ``events``, ``token``, ``workflow_id``, ``run_id``,
    ``workflow_type``, ``workflow_version``, ``decisions``,
    ``print_events()``, ``add_decision()``, ``fail()``, ``decision_done()``.
    """

    def __init__(self, data: dict):
        self.raw = data
        self.events: list[dict] = data.get("events", [])
        for event in self.events:
            event["attributes"] = attributes_of(event)
        self.token: str = data["taskToken"]
        self.workflow_id: str = data["workflowExecution"]["workflowId"]
        self.run_id: str = data["workflowExecution"]["runId"]
        self.workflow_type: str = data["workflowType"]["name"]
        self.workflow_version: str = data["workflowType"]["version"]
        self.started_event_id: int = data.get("startedEventId", 0)
        self.previous_started_event_id: int = data.get("previousStartedEventId", 0)
        self.decisions: list[dict] = []
        self.execution_context: str | None = None

    def __repr__(self):
        return (
            f"<DecisionTask {self.workflow_type} v={self.workflow_version} id={self.workflow_id} runId={self.run_id}>"
        )

    # -- reading the history

    @property
    def started_attributes(self) -> dict:
        """Attributes of WorkflowExecutionStarted (input, tags, timeouts...)."""
        for event in self.events:
            if event["eventType"] == "WorkflowExecutionStarted":
                return event["attributes"]
        return {}

    @property
    def input(self) -> str | None:
        """The workflow execution's input, as given to StartWorkflowExecution."""
        return self.started_attributes.get("input")

    @property
    def input_json(self):
        """The input decoded as JSON (None when there is no input)."""
        return None if self.input is None else json.loads(self.input)

    @property
    def new_events(self) -> list[dict]:
        """The events that happened since the previous decision task started."""
        return [e for e in self.events if e["eventId"] > self.previous_started_event_id]

    @property
    def signals(self) -> list[dict]:
        """Every WorkflowExecutionSignaled's attributes (``signalName``, ``input``), oldest first."""
        return [e["attributes"] for e in self.events if e["eventType"] == "WorkflowExecutionSignaled"]

    @property
    def new_signals(self) -> list[dict]:
        """The signals received since the previous decision."""
        return [e["attributes"] for e in self.new_events if e["eventType"] == "WorkflowExecutionSignaled"]

    @property
    def task_timeout(self) -> str | None:
        """This decision task's start-to-close timeout in seconds, or "NONE", from its DecisionTaskScheduled."""
        for event in reversed(self.events):
            if event["eventType"] == "DecisionTaskScheduled":
                return event["attributes"].get("startToCloseTimeout", NONE)
        return None

    @property
    def decision_timeouts(self) -> int:
        """How many decision tasks timed out (START_TO_CLOSE) since the last DecisionTaskCompleted.

        Each is a decision task nobody answered in time: a decider crashed or
        was killed, or left the task after an error (``on_error = retry``).
        """
        count = 0
        for event in reversed(self.events):
            if event["eventType"] == "DecisionTaskCompleted":
                break
            if (
                event["eventType"] == "DecisionTaskTimedOut"
                and event["attributes"].get("timeoutType") == "START_TO_CLOSE"
            ):
                count += 1
        return count

    @property
    def cancel_requested(self) -> bool:
        return any(e["eventType"] == "WorkflowExecutionCancelRequested" for e in self.events)

    def last_event(self, *, skip_decisions: bool = True) -> dict | None:
        """The newest event, by default the newest that is not a Decision* one."""
        for event in reversed(self.events):
            if not (skip_decisions and event["eventType"].startswith("Decision")):
                return event
        return None

    def _states(self, kind: str) -> dict[str, TaskState]:
        states: dict[str, TaskState] = {}
        by_scheduled_id: dict[int, TaskState] = {}
        state: TaskState | None  # a new one, or the one an event moves (if it is known)
        for event in self.events:
            tracked = _TRACKED.get(event["eventType"])
            if not tracked or tracked[0] != kind:
                continue
            attrs, status = event["attributes"], tracked[1]
            if status in ("scheduled", "schedule_failed"):
                task_id = attrs.get("activityId") or attrs.get("id") or attrs.get("timerId")
                typ = attrs.get("activityType", {})
                state = TaskState(
                    id=task_id,
                    name=typ.get("name") or attrs.get("name"),
                    version=typ.get("version"),
                    input=attrs.get("input"),
                    control=attrs.get("control"),
                    scheduled_event_id=event["eventId"],
                    status=status,
                    reason=attrs.get("cause"),
                )
                states[task_id] = state
                by_scheduled_id[event["eventId"]] = state
                continue
            if kind == "timer":
                state = states.get(attrs.get("timerId"))
            else:
                state = by_scheduled_id.get(attrs.get("scheduledEventId"))
            if state is None:
                continue
            state.status = status
            state.result = attrs.get("result", state.result)
            state.reason = attrs.get("reason", attrs.get("cause", state.reason))
            state.details = attrs.get("details", state.details)
            state.timeout_type = attrs.get("timeoutType", state.timeout_type)
        return states

    @property
    def activities(self) -> dict[str, TaskState]:
        """Every activity task of the history, by activity id, in its latest state."""
        return self._states("activity")

    @property
    def lambdas(self) -> dict[str, TaskState]:
        """Every Lambda function task (LambdaFunctionScheduled/Started/Completed/Failed/TimedOut), by id."""
        return self._states("lambda")

    @property
    def timers(self) -> dict[str, TaskState]:
        """Every timer of the history, by timer id, in its latest state."""
        return self._states("timer")

    def print_events(self) -> None:
        """Print every non-decision event and its attributes (the seed's debug aid)."""
        for event in self.events:
            if "Decision" in event["eventType"]:
                continue
            print(f"==== {event['eventId']:3d} {event['eventType']}")
            pprint.pprint(event["attributes"])

    # -- deciding

    def add_decision(self, decision_type: str, **attributes) -> dict:
        """Append a decision: ``add_decision('StartTimer', timerId='t', startToFireTimeout='5')``."""
        name = f"{decision_type[0].lower()}{decision_type[1:]}DecisionAttributes"
        decision = {"decisionType": decision_type, name: {k: v for k, v in attributes.items() if v is not None}}
        self.decisions.append(decision)
        return decision

    def fail(self, reason: str, details: str = "-"):
        """Fail the execution now (raises WorkflowFailure)."""
        raise WorkflowFailure(reason, details)

    def decision_done(self, msg: str = "-"):
        """Stop deciding now; the decisions added so far are sent (raises DecisionDone)."""
        raise DecisionDone(f"Decision Done: {msg}")

    def schedule_activity(
        self,
        activity_id: str,
        name: str,
        version: str,
        input: str | None = None,
        *,
        task_list: str | None = None,
        control: str | None = None,
        schedule_to_start_timeout: str | None = None,
        start_to_close_timeout: str | None = None,
        schedule_to_close_timeout: str | None = None,
        heartbeat_timeout: str | None = None,
        priority: str | None = None,
    ) -> dict:
        """ScheduleActivityTask; timeouts left out take the activity type's defaults."""
        return self.add_decision(
            "ScheduleActivityTask",
            activityType={"name": name, "version": version},
            activityId=activity_id,
            input=checked_payload("ScheduleActivityTask", "input", input),
            control=checked_payload("ScheduleActivityTask", "control", control),
            taskList={"name": task_list} if task_list else None,
            scheduleToStartTimeout=schedule_to_start_timeout,
            startToCloseTimeout=start_to_close_timeout,
            scheduleToCloseTimeout=schedule_to_close_timeout,
            heartbeatTimeout=heartbeat_timeout,
            taskPriority=priority,
        )

    def request_cancel_activity(self, activity_id: str) -> dict:
        return self.add_decision("RequestCancelActivityTask", activityId=activity_id)

    def start_timer(self, timer_id: str, seconds: int | str, control: str | None = None) -> dict:
        control = checked_payload("StartTimer", "control", control)
        return self.add_decision("StartTimer", timerId=timer_id, startToFireTimeout=str(seconds), control=control)

    def cancel_timer(self, timer_id: str) -> dict:
        return self.add_decision("CancelTimer", timerId=timer_id)

    def schedule_lambda(
        self,
        lambda_id: str,
        function: str,
        input: str | None = None,
        *,
        start_to_close_timeout: str | None = None,
        control: str | None = None,
    ) -> dict:
        """ScheduleLambdaFunction: SWF invokes ``function`` with the execution's Lambda role."""
        return self.add_decision(
            "ScheduleLambdaFunction",
            id=lambda_id,
            name=function,
            input=checked_payload("ScheduleLambdaFunction", "input", input),
            control=checked_payload("ScheduleLambdaFunction", "control", control),
            startToCloseTimeout=start_to_close_timeout,
        )

    def record_marker(self, name: str, details: str | None = None) -> dict:
        """RecordMarker; PayloadTooLarge if ``details`` is over SWF's 32768 characters."""
        return self.add_decision(
            "RecordMarker", markerName=name, details=checked_payload("RecordMarker", "details", details)
        )

    def decisions_are_failure(self) -> bool:
        """True when the decisions are one FailWorkflowExecution: nothing simpler is left to send."""
        return [d.get("decisionType") for d in self.decisions] == ["FailWorkflowExecution"]

    def complete(self, result: str | None = None) -> dict:
        """CompleteWorkflowExecution with ``result``; PayloadTooLarge over SWF's 32768 characters."""
        result = None if result is None else str(result)
        return self.add_decision(
            "CompleteWorkflowExecution", result=checked_payload("CompleteWorkflowExecution", "result", result)
        )

    def fail_now(self, reason: str, details: str | None = None) -> dict:
        """FailWorkflowExecution as a decision, without raising (see ``fail()``)."""
        return self.add_decision(
            "FailWorkflowExecution",
            reason=truncate(reason, MAX_REASON),
            details=truncate(details, MAX_INPUT, keep="tail"),
        )

    def cancel(self, details: str | None = None) -> dict:
        """CancelWorkflowExecution: acknowledge a cancel request."""
        return self.add_decision("CancelWorkflowExecution", details=truncate(details, MAX_INPUT))

    def continue_as_new(
        self,
        input: str | None = None,
        *,
        task_list: str | None = None,
        version: str | None = None,
        execution_timeout: str | None = None,
        task_timeout: str | None = None,
        child_policy: str | None = None,
        tags: list[str] | None = None,
        lambda_role: str | None = None,
    ) -> dict:
        """ContinueAsNewWorkflowExecution: start afresh with an empty history.

        Keep histories under ~10,000 events (SWF's hard limit is 25,000).
        PayloadTooLarge if ``input`` is over SWF's 32768 characters.
        """
        input = None if input is None else str(input)
        return self.add_decision(
            "ContinueAsNewWorkflowExecution",
            input=checked_payload("ContinueAsNewWorkflowExecution", "input", input),
            taskList={"name": task_list} if task_list else None,
            workflowTypeVersion=version,
            executionStartToCloseTimeout=execution_timeout,
            taskStartToCloseTimeout=task_timeout,
            childPolicy=child_policy,
            tagList=tags,
            lambdaRole=lambda_role,
        )


class Workflow:
    """Base class of a workflow type's decider logic.

    Subclass it, set ``name`` and ``version`` (and any ``default_*`` used when
    the type is registered), and write ``run()``: read ``self.task``, add
    decisions. A subclass without a ``name`` is an abstract base and is never
    registered or dispatched to.

    Example::

        class Hello(Workflow):
            name = "Hello"
            version = "1.0"
            default_task_list = "default"
            default_execution_start_to_close_timeout = "600"
            default_task_start_to_close_timeout = "10"

            def run(self):
                self.task.complete("hello")
    """

    name: str | None = None
    version: str | None = None
    description: str | None = None
    default_task_start_to_close_timeout: str | None = None
    default_execution_start_to_close_timeout: str | None = None
    default_task_list: str | None = None
    default_task_priority: str | None = None
    default_child_policy: str | None = None
    default_lambda_role: str | None = None

    def __init__(self, task: DecisionTask):
        self.task = task

    def __repr__(self):
        return f"<Workflow {self.name}({self.version})>"

    def run(self):
        raise NotImplementedError(f"{type(self).__name__}.run() is not written")

    @classmethod
    def registration(cls) -> dict:
        """The RegisterWorkflowType parameters of this type (its name, version, defaults)."""
        return type_registration(cls, WORKFLOW_DEFAULTS)
