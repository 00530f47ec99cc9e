"""The decider's authoring API: DecisionTask read from a hand-built poll response, Workflow.

Every decision a helper builds is also checked against botocore's model of
RespondDecisionTaskCompleted, so that SWF would accept it.
"""

from __future__ import annotations

import datetime
import json
import pprint

import botocore.session
import pytest
from botocore.validate import validate_parameters
from stubs import T0, event

from caravand import DecisionDone, DecisionTask, TaskState, Workflow, WorkflowFailure, swf
from caravand.workflow import PayloadTooLarge


def started(event_id: int = 1, input: str | None = None) -> dict:
    attributes = {
        "childPolicy": "TERMINATE",
        "taskList": {"name": "default"},
        "workflowType": {"name": "Demo", "version": "0.1"},
    }
    if input is not None:
        attributes["input"] = input
    return event(event_id, "WorkflowExecutionStarted", **attributes)


def decision_events(first_id: int, *, completed: bool = True) -> list[dict]:
    """DecisionTaskScheduled, DecisionTaskStarted (and DecisionTaskCompleted)."""
    events = [
        event(first_id, "DecisionTaskScheduled", taskList={"name": "default"}, startToCloseTimeout="10"),
        event(first_id + 1, "DecisionTaskStarted", identity="host:1", scheduledEventId=first_id),
    ]
    if completed:
        events.append(
            event(first_id + 2, "DecisionTaskCompleted", scheduledEventId=first_id, startedEventId=first_id + 1)
        )
    return events


def poll_response(events: list[dict], *, previous_started: int = 0, **overrides) -> dict:
    data = {
        "taskToken": "token-1",
        "startedEventId": events[-1]["eventId"] if events else 0,
        "previousStartedEventId": previous_started,
        "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
        "workflowType": {"name": "Demo", "version": "0.1"},
        "events": events,
    }
    data.update(overrides)
    return data


def make_task(events: list[dict], **kwargs) -> DecisionTask:
    return DecisionTask(poll_response(events, **kwargs))


#: What botocore (and SWF) accept as RespondDecisionTaskCompleted's parameters.
RESPOND_SHAPE = (
    botocore.session.get_session().get_service_model("swf").operation_model("RespondDecisionTaskCompleted").input_shape
)


def assert_valid_decisions(decisions: list[dict]) -> None:
    """SWF's model accepts these decisions."""
    validate_parameters({"taskToken": "token-1", "decisions": decisions}, RESPOND_SHAPE)


# -- the seed's API


def test_events_keep_the_raw_attributes_and_share_them_as_attributes():
    signaled = event(5, "WorkflowExecutionSignaled", signalName="PRINT", input="Hello")
    raw_attributes = signaled["workflowExecutionSignaledEventAttributes"]
    task = make_task([started(input="x"), *decision_events(2), signaled])

    ev = task.events[4]
    assert ev["eventType"] == "WorkflowExecutionSignaled"
    # The very same dict, and the raw SWF key is still there.
    assert ev["attributes"] is raw_attributes
    assert ev["workflowExecutionSignaledEventAttributes"] is raw_attributes
    assert ev["attributes"] == {"signalName": "PRINT", "input": "Hello"}
    assert ev["eventTimestamp"] == T0 + datetime.timedelta(seconds=5)
    assert [e["eventId"] for e in task.events] == [1, 2, 3, 4, 5]
    for ev in task.events:
        assert ev["attributes"] is ev[f"{ev['eventType'][0].lower()}{ev['eventType'][1:]}EventAttributes"]


def test_event_without_attributes_gets_an_empty_dict():
    bare = {"eventId": 1, "eventType": "SomethingNew", "eventTimestamp": T0}
    task = make_task([bare])
    assert task.events[0]["attributes"] == {}
    assert task.events[0]["eventType"] == "SomethingNew"


def test_task_identity_members():
    task = make_task([started()], workflowType={"name": "Greeting", "version": "1.0"})
    assert task.token == "token-1"
    assert task.workflow_id == "wf-1"
    assert task.run_id == "run-1"
    assert task.workflow_type == "Greeting"
    assert task.workflow_version == "1.0"
    assert task.decisions == []
    assert repr(task) == "<DecisionTask Greeting v=1.0 id=wf-1 runId=run-1>"


def test_print_events_format_skips_decision_events(capsys):
    signaled = event(100, "WorkflowExecutionSignaled", signalName="PRINT", input="Hello World!")
    task = make_task([started(input="1"), *decision_events(2), signaled])
    task.print_events()
    out = capsys.readouterr().out

    expected = (
        "====   1 WorkflowExecutionStarted\n"
        + pprint.pformat(task.events[0]["attributes"])
        + "\n"
        + "==== 100 WorkflowExecutionSignaled\n"
        + pprint.pformat({"input": "Hello World!", "signalName": "PRINT"})
        + "\n"
    )
    assert out == expected
    assert "Decision" not in out


def test_add_decision_builds_type_and_attributes_dropping_none():
    task = make_task([started()])
    decision = task.add_decision("StartTimer", startToFireTimeout="300", timerId="SignalTimeout", control=None)
    assert decision == {
        "decisionType": "StartTimer",
        "startTimerDecisionAttributes": {"startToFireTimeout": "300", "timerId": "SignalTimeout"},
    }
    task.add_decision("CompleteWorkflowExecution")
    assert task.decisions == [
        decision,
        {"decisionType": "CompleteWorkflowExecution", "completeWorkflowExecutionDecisionAttributes": {}},
    ]
    # Falsy values other than None are kept.
    kept = task.add_decision("RecordMarker", markerName="m", details="")
    assert kept["recordMarkerDecisionAttributes"] == {"markerName": "m", "details": ""}
    assert_valid_decisions(task.decisions)


def test_fail_raises_workflow_failure():
    task = make_task([started()])
    with pytest.raises(WorkflowFailure) as info:
        task.fail("patience_lost", "waited 300 s")
    assert info.value.reason == "patience_lost"
    assert info.value.details == "waited 300 s"
    assert str(info.value) == "patience_lost (waited 300 s)"
    with pytest.raises(WorkflowFailure) as info:
        task.fail("aborted")
    assert info.value.details == "-"
    assert task.decisions == []  # fail() itself adds nothing: the decider does


def test_decision_done_raises():
    task = make_task([started()])
    with pytest.raises(DecisionDone, match="^Decision Done: JustStartedATimer$"):
        task.decision_done(msg="JustStartedATimer")
    with pytest.raises(DecisionDone, match="^Decision Done: -$"):
        task.decision_done()


# -- beyond the seed: input, new events, signals


def test_input_and_input_json():
    task = make_task([started(input='{"name": "World", "n": [1, 2]}'), *decision_events(2, completed=False)])
    assert task.input == '{"name": "World", "n": [1, 2]}'
    assert task.input_json == {"name": "World", "n": [1, 2]}
    assert task.started_attributes["childPolicy"] == "TERMINATE"


def test_no_input():
    task = make_task([started(), *decision_events(2, completed=False)])
    assert task.input is None
    assert task.input_json is None


def test_input_not_json_raises_on_input_json_only():
    task = make_task([started(input="plain text")])
    assert task.input == "plain text"
    with pytest.raises(json.JSONDecodeError):
        _ = task.input_json


def test_new_events_since_previous_decision():
    events = [
        started(),
        *decision_events(2),  # 2, 3, 4: the previous decision task started at 3
        event(5, "WorkflowExecutionSignaled", signalName="PRINT", input="a"),
        event(6, "WorkflowExecutionSignaled", signalName="STOP"),
        *decision_events(7, completed=False),
    ]
    task = make_task(events, previous_started=3)
    assert [e["eventId"] for e in task.new_events] == [4, 5, 6, 7, 8]
    first = make_task(events[:3], previous_started=0)
    assert [e["eventId"] for e in first.new_events] == [1, 2, 3]


def test_signals_and_new_signals():
    events = [
        started(),
        event(2, "WorkflowExecutionSignaled", signalName="PRINT", input="first"),
        *decision_events(3),  # 3, 4, 5
        event(6, "WorkflowExecutionSignaled", signalName="PRINT", input="second"),
        event(7, "WorkflowExecutionSignaled", signalName="STOP"),
        *decision_events(8, completed=False),
    ]
    task = make_task(events, previous_started=4)
    assert [s["signalName"] for s in task.signals] == ["PRINT", "PRINT", "STOP"]
    assert task.signals[0] == {"signalName": "PRINT", "input": "first"}
    assert task.new_signals == [{"signalName": "PRINT", "input": "second"}, {"signalName": "STOP"}]
    assert task.signals[1] is task.events[5]["attributes"]


def test_last_event_and_cancel_requested():
    events = [started(), event(2, "WorkflowExecutionCancelRequested"), *decision_events(3, completed=False)]
    task = make_task(events)
    assert task.last_event()["eventId"] == 2
    assert task.last_event(skip_decisions=False)["eventId"] == 4
    assert task.cancel_requested
    assert not make_task([started()]).cancel_requested
    assert make_task([]).last_event() is None


def timed_out(event_id: int, timeout_type: str = "START_TO_CLOSE") -> dict:
    return event(
        event_id,
        "DecisionTaskTimedOut",
        scheduledEventId=event_id - 2,
        startedEventId=event_id - 1,
        timeoutType=timeout_type,
    )


def test_decision_timeouts_count_start_to_close_timeouts_since_the_last_completed_decision():
    assert make_task([started(), *decision_events(2, completed=False)]).decision_timeouts == 0
    history = [
        started(),
        *decision_events(2, completed=False),
        timed_out(4),
        *decision_events(5, completed=False),
        timed_out(7),
        *decision_events(8),  # completed: the count starts again
        event(11, "WorkflowExecutionSignaled", signalName="GO"),
        *decision_events(12, completed=False),
        timed_out(14),
        event(15, "WorkflowExecutionSignaled", signalName="GO"),  # a signal between tries does not count
        *decision_events(16, completed=False),
        timed_out(18, "SCHEDULE_TO_START"),  # no decider took it: not one that failed
        *decision_events(19, completed=False),
        timed_out(21),
        *decision_events(22, completed=False),
    ]
    assert make_task(history).decision_timeouts == 2
    assert make_task(history[:9]).decision_timeouts == 2  # before the completed decision


def test_task_timeout_is_the_latest_decision_task_scheduled_s():
    assert make_task([started()]).task_timeout is None
    assert make_task([started(), *decision_events(2)]).task_timeout == "10"
    rescheduled = event(5, "DecisionTaskScheduled", taskList={"name": "default"}, startToCloseTimeout="NONE")
    assert make_task([started(), *decision_events(2), rescheduled]).task_timeout == "NONE"
    unset = event(2, "DecisionTaskScheduled", taskList={"name": "default"})
    assert make_task([started(), unset]).task_timeout == "NONE"


# -- activities, Lambda functions and timers


def scheduled_activity(event_id, activity_id="a1", name="Work", version="1.0", input="in", control=None):
    attributes = {
        "activityType": {"name": name, "version": version},
        "activityId": activity_id,
        "input": input,
        "taskList": {"name": "work"},
        "decisionTaskCompletedEventId": event_id - 1,
    }
    if control is not None:
        attributes["control"] = control
    return event(event_id, "ActivityTaskScheduled", **attributes)


def test_activity_states_follow_the_history():
    events = [started(), *decision_events(2), scheduled_activity(5, control="c1")]
    state = make_task(events).activities["a1"]
    assert state == TaskState(
        id="a1", name="Work", version="1.0", status="scheduled", input="in", control="c1", scheduled_event_id=5
    )
    assert not state.closed and not state.succeeded

    events.append(event(6, "ActivityTaskStarted", identity="w:1", scheduledEventId=5))
    state = make_task(events).activities["a1"]
    assert state.status == "started" and not state.closed

    completed = [*events, event(7, "ActivityTaskCompleted", result='{"ok": 1}', scheduledEventId=5, startedEventId=6)]
    state = make_task(completed).activities["a1"]
    assert state.status == "completed" and state.result == '{"ok": 1}'
    assert state.closed and state.succeeded

    failed = [*events, event(7, "ActivityTaskFailed", reason="ValueError: x", details="tb", scheduledEventId=5)]
    state = make_task(failed).activities["a1"]
    assert (state.status, state.reason, state.details) == ("failed", "ValueError: x", "tb")
    assert state.closed and not state.succeeded

    timed_out = [*events, event(7, "ActivityTaskTimedOut", timeoutType="HEARTBEAT", scheduledEventId=5)]
    state = make_task(timed_out).activities["a1"]
    assert (state.status, state.timeout_type) == ("timed_out", "HEARTBEAT")
    assert state.closed

    canceled = [*events, event(7, "ActivityTaskCanceled", details="bye", scheduledEventId=5)]
    state = make_task(canceled).activities["a1"]
    assert (state.status, state.details) == ("canceled", "bye")


def test_activity_schedule_failed():
    failed = event(
        5,
        "ScheduleActivityTaskFailed",
        activityType={"name": "Nope", "version": "9"},
        activityId="a1",
        cause="ACTIVITY_TYPE_DOES_NOT_EXIST",
        decisionTaskCompletedEventId=4,
    )
    state = make_task([started(), *decision_events(2), failed]).activities["a1"]
    assert state.status == "schedule_failed"
    assert state.reason == "ACTIVITY_TYPE_DOES_NOT_EXIST"
    assert (state.name, state.version) == ("Nope", "9")
    assert state.closed and not state.succeeded


def test_activities_are_matched_by_scheduled_event_id_and_the_latest_schedule_wins():
    events = [
        started(),
        *decision_events(2),
        scheduled_activity(5, "a1", input="one"),
        scheduled_activity(6, "b1", name="Other"),
        event(7, "ActivityTaskFailed", reason="boom", scheduledEventId=5),
        event(8, "ActivityTaskCompleted", result="B", scheduledEventId=6),
        *decision_events(9),
        scheduled_activity(12, "a1", input="two"),  # retried under the same id
        event(13, "ActivityTaskCompleted", result="A", scheduledEventId=12),
        # An event about an unknown scheduled id is ignored.
        event(14, "ActivityTaskCompleted", result="?", scheduledEventId=999),
    ]
    activities = make_task(events).activities
    assert set(activities) == {"a1", "b1"}
    assert (activities["a1"].status, activities["a1"].result, activities["a1"].input) == ("completed", "A", "two")
    assert activities["a1"].scheduled_event_id == 12
    assert activities["a1"].reason is None  # the failure was the first attempt's
    assert (activities["b1"].name, activities["b1"].result) == ("Other", "B")


def test_lambda_states_follow_the_history():
    scheduled = event(
        5,
        "LambdaFunctionScheduled",
        id="hello",
        name="caravand-hello",
        input='{"x": 1}',
        decisionTaskCompletedEventId=4,
    )
    events = [started(), *decision_events(2), scheduled]
    state = make_task(events).lambdas["hello"]
    assert (state.id, state.name, state.input, state.status) == ("hello", "caravand-hello", '{"x": 1}', "scheduled")
    assert make_task(events).activities == {}

    events.append(event(6, "LambdaFunctionStarted", scheduledEventId=5))
    assert make_task(events).lambdas["hello"].status == "started"

    completed = [*events, event(7, "LambdaFunctionCompleted", result="hi", scheduledEventId=5, startedEventId=6)]
    state = make_task(completed).lambdas["hello"]
    assert (state.status, state.result, state.succeeded) == ("completed", "hi", True)

    failed = [
        *events,
        event(7, "LambdaFunctionFailed", reason="Unhandled", details="stack", scheduledEventId=5, startedEventId=6),
    ]
    state = make_task(failed).lambdas["hello"]
    assert (state.status, state.reason, state.details, state.closed) == ("failed", "Unhandled", "stack", True)

    timed_out = [
        *events,
        event(7, "LambdaFunctionTimedOut", timeoutType="START_TO_CLOSE", scheduledEventId=5, startedEventId=6),
    ]
    state = make_task(timed_out).lambdas["hello"]
    assert (state.status, state.timeout_type) == ("timed_out", "START_TO_CLOSE")


def test_lambda_schedule_and_start_failures():
    schedule_failed = event(
        5,
        "ScheduleLambdaFunctionFailed",
        id="hello",
        name="caravand-hello",
        cause="LAMBDA_SERVICE_NOT_AVAILABLE_IN_REGION",
        decisionTaskCompletedEventId=4,
    )
    state = make_task([started(), *decision_events(2), schedule_failed]).lambdas["hello"]
    assert (state.status, state.reason, state.closed) == (
        "schedule_failed",
        "LAMBDA_SERVICE_NOT_AVAILABLE_IN_REGION",
        True,
    )

    scheduled = event(5, "LambdaFunctionScheduled", id="hello", name="f", decisionTaskCompletedEventId=4)
    start_failed = event(6, "StartLambdaFunctionFailed", scheduledEventId=5, cause="ASSUME_ROLE_FAILED", message="no")
    state = make_task([started(), *decision_events(2), scheduled, start_failed]).lambdas["hello"]
    assert (state.status, state.reason, state.closed) == ("start_failed", "ASSUME_ROLE_FAILED", True)


def test_timer_states():
    events = [
        started(),
        *decision_events(2),
        event(5, "TimerStarted", timerId="t1", startToFireTimeout="300", control="ctl", decisionTaskCompletedEventId=4),
        event(6, "TimerStarted", timerId="t2", startToFireTimeout="5", decisionTaskCompletedEventId=4),
        event(7, "StartTimerFailed", timerId="t3", cause="TIMER_ID_ALREADY_IN_USE", decisionTaskCompletedEventId=4),
    ]
    timers = make_task(events).timers
    assert {k: v.status for k, v in timers.items()} == {"t1": "scheduled", "t2": "scheduled", "t3": "schedule_failed"}
    assert timers["t1"].control == "ctl"
    assert timers["t3"].reason == "TIMER_ID_ALREADY_IN_USE"

    events += [
        event(8, "TimerFired", timerId="t1", startedEventId=5),
        event(9, "TimerCanceled", timerId="t2", startedEventId=6, decisionTaskCompletedEventId=4),
    ]
    timers = make_task(events).timers
    assert (timers["t1"].status, timers["t1"].succeeded, timers["t1"].closed) == ("fired", True, True)
    assert (timers["t2"].status, timers["t2"].succeeded, timers["t2"].closed) == ("canceled", False, True)
    assert make_task(events).activities == {} and make_task(events).lambdas == {}


# -- decision helpers


def test_schedule_activity_full_and_minimal():
    task = make_task([started()])
    full = task.schedule_activity(
        "a#1",
        "Work",
        "1.0",
        '{"v": 1}',
        task_list="work",
        control="c",
        schedule_to_start_timeout="10",
        start_to_close_timeout="60",
        schedule_to_close_timeout="70",
        heartbeat_timeout="20",
        priority="5",
    )
    assert full == {
        "decisionType": "ScheduleActivityTask",
        "scheduleActivityTaskDecisionAttributes": {
            "activityType": {"name": "Work", "version": "1.0"},
            "activityId": "a#1",
            "input": '{"v": 1}',
            "control": "c",
            "taskList": {"name": "work"},
            "scheduleToStartTimeout": "10",
            "startToCloseTimeout": "60",
            "scheduleToCloseTimeout": "70",
            "heartbeatTimeout": "20",
            "taskPriority": "5",
        },
    }
    minimal = task.schedule_activity("a#2", "Work", "1.0")
    assert minimal["scheduleActivityTaskDecisionAttributes"] == {
        "activityType": {"name": "Work", "version": "1.0"},
        "activityId": "a#2",
    }
    assert task.decisions == [full, minimal]
    assert_valid_decisions(task.decisions)


def test_timer_helpers():
    task = make_task([started()])
    assert task.start_timer("t", 300) == {
        "decisionType": "StartTimer",
        "startTimerDecisionAttributes": {"timerId": "t", "startToFireTimeout": "300"},
    }
    assert task.start_timer("u", "5", control="x")["startTimerDecisionAttributes"]["control"] == "x"
    assert task.cancel_timer("t") == {"decisionType": "CancelTimer", "cancelTimerDecisionAttributes": {"timerId": "t"}}
    assert task.request_cancel_activity("a") == {
        "decisionType": "RequestCancelActivityTask",
        "requestCancelActivityTaskDecisionAttributes": {"activityId": "a"},
    }
    assert task.record_marker("m", "d")["recordMarkerDecisionAttributes"] == {"markerName": "m", "details": "d"}
    assert_valid_decisions(task.decisions)


def test_schedule_lambda():
    task = make_task([started()])
    assert task.schedule_lambda("hello", "caravand-hello", '{"a": 1}', start_to_close_timeout="60", control="c") == {
        "decisionType": "ScheduleLambdaFunction",
        "scheduleLambdaFunctionDecisionAttributes": {
            "id": "hello",
            "name": "caravand-hello",
            "input": '{"a": 1}',
            "control": "c",
            "startToCloseTimeout": "60",
        },
    }
    assert task.schedule_lambda("h2", "f")["scheduleLambdaFunctionDecisionAttributes"] == {"id": "h2", "name": "f"}
    assert_valid_decisions(task.decisions)


def test_complete():
    task = make_task([started()])
    assert task.complete("Hello, World!") == {
        "decisionType": "CompleteWorkflowExecution",
        "completeWorkflowExecutionDecisionAttributes": {"result": "Hello, World!"},
    }
    assert task.complete()["completeWorkflowExecutionDecisionAttributes"] == {}
    largest = task.complete("x" * swf.MAX_INPUT)["completeWorkflowExecutionDecisionAttributes"]["result"]
    assert len(largest) == swf.MAX_INPUT == 32768
    assert task.complete(42)["completeWorkflowExecutionDecisionAttributes"] == {"result": "42"}
    assert_valid_decisions(task.decisions)


def test_an_oversized_result_raises_instead_of_being_cut():
    """A result cut short would complete the execution with broken data (half a JSON document)."""
    task = make_task([started()])
    result = json.dumps({"rows": ["x" * 100] * 400})
    with pytest.raises(PayloadTooLarge) as info:
        task.complete(result)
    assert str(info.value) == (
        f"CompleteWorkflowExecution result is {len(result)} characters, over SWF's limit of 32768: "
        "store it elsewhere (S3, a database) and pass a reference"
    )
    assert (info.value.decision, info.value.field, info.value.size) == (
        "CompleteWorkflowExecution",
        "result",
        len(result),
    )
    assert isinstance(info.value, ValueError)
    assert task.decisions == []  # nothing half-made is sent


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda task, big: task.continue_as_new(big), "ContinueAsNewWorkflowExecution input"),
        (lambda task, big: task.schedule_activity("a", "A", "1", big), "ScheduleActivityTask input"),
        (lambda task, big: task.schedule_activity("a", "A", "1", control=big), "ScheduleActivityTask control"),
        (lambda task, big: task.start_timer("t", 5, control=big), "StartTimer control"),
        (lambda task, big: task.schedule_lambda("l", "f", big), "ScheduleLambdaFunction input"),
        (lambda task, big: task.schedule_lambda("l", "f", control=big), "ScheduleLambdaFunction control"),
        (lambda task, big: task.record_marker("m", big), "RecordMarker details"),
    ],
)
def test_every_oversized_payload_raises(make, where):
    task = make_task([started()])
    with pytest.raises(PayloadTooLarge, match=f"^{where} is 32769 characters, over SWF's limit of 32768: "):
        make(task, "x" * (swf.MAX_INPUT + 1))
    assert task.decisions == []
    make(task, "x" * swf.MAX_INPUT)  # the limit itself is fine
    assert_valid_decisions(task.decisions)


def test_fail_now_cuts_reason_and_keeps_the_tail_of_details():
    task = make_task([started()])
    details = "".join(f"line {i}\n" for i in range(10000)) + "ValueError: the real cause"
    assert len(details) > swf.MAX_INPUT
    decision = task.fail_now("R" * 1000, details)
    attributes = decision["failWorkflowExecutionDecisionAttributes"]
    assert decision["decisionType"] == "FailWorkflowExecution"
    assert len(attributes["reason"]) == 256
    assert attributes["reason"].startswith("RRRR")
    assert len(attributes["details"]) <= 32768
    assert attributes["details"].endswith("line 9999\nValueError: the real cause")
    assert task.fail_now("short")["failWorkflowExecutionDecisionAttributes"] == {"reason": "short"}
    assert task.fail_now("r", "d")["failWorkflowExecutionDecisionAttributes"] == {"reason": "r", "details": "d"}
    assert_valid_decisions(task.decisions)


def test_continue_as_new():
    task = make_task([started()])
    assert task.continue_as_new(
        '{"n": 2}',
        task_list="tl",
        version="2.0",
        execution_timeout="600",
        task_timeout="10",
        child_policy="TERMINATE",
        tags=["a", "b"],
        lambda_role="arn:aws:iam::123456789012:role/swf-lambda",
    ) == {
        "decisionType": "ContinueAsNewWorkflowExecution",
        "continueAsNewWorkflowExecutionDecisionAttributes": {
            "input": '{"n": 2}',
            "taskList": {"name": "tl"},
            "workflowTypeVersion": "2.0",
            "executionStartToCloseTimeout": "600",
            "taskStartToCloseTimeout": "10",
            "childPolicy": "TERMINATE",
            "tagList": ["a", "b"],
            "lambdaRole": "arn:aws:iam::123456789012:role/swf-lambda",
        },
    }
    assert task.continue_as_new()["continueAsNewWorkflowExecutionDecisionAttributes"] == {}
    assert_valid_decisions(task.decisions)


def test_cancel():
    task = make_task([started(), event(2, "WorkflowExecutionCancelRequested")])
    assert task.cancel("as asked") == {
        "decisionType": "CancelWorkflowExecution",
        "cancelWorkflowExecutionDecisionAttributes": {"details": "as asked"},
    }
    assert task.cancel()["cancelWorkflowExecutionDecisionAttributes"] == {}
    # Details, unlike a payload, may be cut.
    assert len(task.cancel("d" * 40000)["cancelWorkflowExecutionDecisionAttributes"]["details"]) == swf.MAX_INPUT
    assert_valid_decisions(task.decisions)


# -- Workflow


class Full(Workflow):
    name = "Full"
    version = "2.1"
    description = "every default"
    default_task_start_to_close_timeout = "10"
    default_execution_start_to_close_timeout = 600  # not a string: sent as one
    default_task_list = "full"
    default_task_priority = "3"
    default_child_policy = "TERMINATE"
    default_lambda_role = "arn:aws:iam::123456789012:role/swf-lambda"


def test_workflow_registration_params():
    assert Full.registration() == {
        "name": "Full",
        "version": "2.1",
        "description": "every default",
        "defaultTaskStartToCloseTimeout": "10",
        "defaultExecutionStartToCloseTimeout": "600",
        "defaultTaskList": {"name": "full"},
        "defaultTaskPriority": "3",
        "defaultChildPolicy": "TERMINATE",
        "defaultLambdaRole": "arn:aws:iam::123456789012:role/swf-lambda",
    }

    class Bare(Workflow):
        name = "Bare"
        version = "1"

    assert Bare.registration() == {"name": "Bare", "version": "1"}


def test_workflow_base_run_is_not_written():
    workflow = Full(make_task([started()]))
    assert workflow.task.workflow_id == "wf-1"
    assert repr(workflow) == "<Workflow Full(2.1)>"
    with pytest.raises(NotImplementedError, match="Full.run"):
        workflow.run()


# -- a workflow written for the seed's API runs unchanged


class SeedDemo(Workflow):
    """The seed's demo, as its users wrote it: only the seed's API, only the import changed."""

    name = "Demo"
    version = "0.1"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_task_list = "default"
    default_child_policy = "TERMINATE"

    def run(self):
        print("")
        self.task.print_events()

        non_decision_events = [e for e in self.task.events if not e["eventType"].startswith("Decision")]
        last_event = non_decision_events[-1]

        if last_event["eventType"] == "WorkflowExecutionStarted":
            self.task.add_decision("StartTimer", startToFireTimeout="300", timerId="SignalTimeout")
            self.task.decision_done(msg="JustStartedATimer")

        elif last_event["eventType"] == "TimerFired":
            self.task.fail("patience_lost")

        elif last_event["eventType"] == "WorkflowExecutionSignaled":
            signal_name = last_event["attributes"]["signalName"].upper()
            if signal_name == "ABORT":
                self.task.fail("aborted")
            elif signal_name == "PRINT":
                signal_input = last_event["attributes"].get("input")
                print("\nThe signal input is: '%s'" % signal_input)  # noqa: UP031 (the seed's own code)
            elif signal_name == "STOP":
                self.task.add_decision("CompleteWorkflowExecution", result='{"success": true}')
            else:
                print("Unknown signal '%s'" % signal_name)  # noqa: UP031
                self.task.decision_done(msg="JustIgnoringThisUnknownSignal")
        else:
            self.task.fail("unknown_event_type")


def seed_history(*extra: dict) -> list[dict]:
    return [
        started(input="1"),
        *decision_events(2),
        event(5, "TimerStarted", timerId="SignalTimeout", startToFireTimeout="300", decisionTaskCompletedEventId=4),
        *extra,
        *decision_events(5 + len(extra) + 1, completed=False),
    ]


def test_seed_workflow_starts_a_timer(capsys):
    task = make_task([started(input="1"), *decision_events(2, completed=False)])
    with pytest.raises(DecisionDone, match="JustStartedATimer"):
        SeedDemo(task).run()
    assert task.decisions == [
        {
            "decisionType": "StartTimer",
            "startTimerDecisionAttributes": {"startToFireTimeout": "300", "timerId": "SignalTimeout"},
        }
    ]
    assert "====   1 WorkflowExecutionStarted" in capsys.readouterr().out
    assert_valid_decisions(task.decisions)


def test_seed_workflow_prints_a_signal(capsys):
    task = make_task(
        seed_history(event(6, "WorkflowExecutionSignaled", signalName="print", input="Hello World!")),
        previous_started=3,
    )
    SeedDemo(task).run()
    assert task.decisions == []
    out = capsys.readouterr().out
    assert "The signal input is: 'Hello World!'" in out
    assert "====   6 WorkflowExecutionSignaled" in out


def test_seed_workflow_stop_completes():
    task = make_task(seed_history(event(6, "WorkflowExecutionSignaled", signalName="STOP")), previous_started=3)
    SeedDemo(task).run()
    assert task.decisions == [
        {
            "decisionType": "CompleteWorkflowExecution",
            "completeWorkflowExecutionDecisionAttributes": {"result": '{"success": true}'},
        }
    ]


def test_seed_workflow_abort_and_timeout_fail():
    task = make_task(seed_history(event(6, "WorkflowExecutionSignaled", signalName="ABORT")), previous_started=3)
    with pytest.raises(WorkflowFailure) as info:
        SeedDemo(task).run()
    assert info.value.reason == "aborted"

    task = make_task(seed_history(event(6, "TimerFired", timerId="SignalTimeout", startedEventId=5)))
    with pytest.raises(WorkflowFailure) as info:
        SeedDemo(task).run()
    assert info.value.reason == "patience_lost"


def test_seed_workflow_unknown_signal(capsys):
    task = make_task(seed_history(event(6, "WorkflowExecutionSignaled", signalName="dance")), previous_started=3)
    with pytest.raises(DecisionDone, match="JustIgnoringThisUnknownSignal"):
        SeedDemo(task).run()
    assert "Unknown signal 'DANCE'" in capsys.readouterr().out
