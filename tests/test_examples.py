"""The example workflows and activities in caravand/examples, on hand-built histories.

LambdaDemo runs through a Decider whose clients are botocore Stubbers: moto has
no Lambda tasks (a ScheduleLambdaFunction decision leaves its execution stuck),
so the decisions and the Lambda event handling can only be tested this way.
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import Stubber

from caravand import ActivityTask, DecisionDone, DecisionTask, WorkflowFailure, swf
from caravand.decider import Decider
from caravand.examples.demo import Demo
from caravand.examples.greeting import ACTIVITY_TASK_LIST, Greeting
from caravand.examples.greeting_activities import Greet, NormalizeName
from caravand.examples.lambda_demo import FUNCTION, LambdaDemo

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOWHERE = "http://127.0.0.1:9"
SESSION = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


class History:
    """Builds a history event by event, numbering them."""

    def __init__(self, input: str | None = None, workflow=("Greeting", "1.0")):
        self.events: list[dict] = []
        self.workflow = workflow
        self.previous_started = 0
        attributes = {
            "childPolicy": "TERMINATE",
            "taskList": {"name": "default"},
            "workflowType": {"name": workflow[0], "version": workflow[1]},
        }
        if input is not None:
            attributes["input"] = input
        self.add("WorkflowExecutionStarted", **attributes)

    def add(self, event_type: str, **attributes) -> int:
        event_id = len(self.events) + 1
        self.events.append(
            {
                "eventId": event_id,
                "eventType": event_type,
                "eventTimestamp": T0 + datetime.timedelta(seconds=event_id),
                f"{event_type[0].lower()}{event_type[1:]}EventAttributes": attributes,
            }
        )
        return event_id

    def decision(self) -> int:
        """A decision task that was completed (what a previous decider did)."""
        scheduled = self.add("DecisionTaskScheduled", taskList={"name": "default"}, startToCloseTimeout="30")
        started = self.add("DecisionTaskStarted", scheduledEventId=scheduled)
        self.previous_started = started
        return self.add("DecisionTaskCompleted", scheduledEventId=scheduled, startedEventId=started)

    def activity(self, activity_id: str, name: str, input: dict, outcome: str | None, **attributes) -> int:
        completed_by = self.decision()
        scheduled = self.add(
            "ActivityTaskScheduled",
            activityType={"name": name, "version": "1.0"},
            activityId=activity_id,
            input=json.dumps(input),
            taskList={"name": ACTIVITY_TASK_LIST},
            decisionTaskCompletedEventId=completed_by,
        )
        if outcome is None:
            return scheduled
        started = self.add("ActivityTaskStarted", identity="w:1", scheduledEventId=scheduled)
        if outcome != "started":
            event_type = {"completed": "ActivityTaskCompleted", "failed": "ActivityTaskFailed"}.get(
                outcome, "ActivityTaskTimedOut"
            )
            self.add(event_type, scheduledEventId=scheduled, startedEventId=started, **attributes)
        return scheduled

    def poll_response(self) -> dict:
        """Ends with the decision task now in hand (scheduled and started)."""
        events = list(self.events)
        scheduled = len(events) + 1
        for event_id, event_type, attributes in (
            (scheduled, "DecisionTaskScheduled", {"taskList": {"name": "default"}, "startToCloseTimeout": "30"}),
            (scheduled + 1, "DecisionTaskStarted", {"scheduledEventId": scheduled}),
        ):
            events.append(
                {
                    "eventId": event_id,
                    "eventType": event_type,
                    "eventTimestamp": T0 + datetime.timedelta(seconds=event_id),
                    f"{event_type[0].lower()}{event_type[1:]}EventAttributes": attributes,
                }
            )
        return {
            "taskToken": "token-1",
            "startedEventId": scheduled + 1,
            "previousStartedEventId": self.previous_started,
            "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
            "workflowType": {"name": self.workflow[0], "version": self.workflow[1]},
            "events": events,
        }

    def task(self) -> DecisionTask:
        return DecisionTask(self.poll_response())


def decide(workflow_class, history: History) -> list[dict]:
    """Run the workflow as the decider does; returns its decisions (WorkflowFailure -> a fail decision)."""
    task = history.task()
    try:
        workflow_class(task).run()
    except DecisionDone:
        pass
    except WorkflowFailure as failure:
        task.fail_now(failure.reason, failure.details)
    return task.decisions


def schedule(activity_id: str, name: str, input: dict) -> dict:
    return {
        "decisionType": "ScheduleActivityTask",
        "scheduleActivityTaskDecisionAttributes": {
            "activityType": {"name": name, "version": "1.0"},
            "activityId": activity_id,
            "input": json.dumps(input),
            "taskList": {"name": ACTIVITY_TASK_LIST},
        },
    }


# -- Greeting


def test_greeting_start_schedules_normalize():
    history = History(input='{"name": "  world "}')
    assert decide(Greeting, history) == [
        schedule("normalize#1", "NormalizeName", {"value": "  world ", "attempt": 1, "fail_attempts": 0})
    ]


def test_greeting_without_input_greets_the_world():
    assert decide(Greeting, History()) == [
        schedule("normalize#1", "NormalizeName", {"value": "World", "attempt": 1, "fail_attempts": 0})
    ]


@pytest.mark.parametrize("outcome", [None, "started"])
def test_greeting_waits_for_a_running_activity(outcome):
    history = History(input='{"name": "world"}')
    history.activity("normalize#1", "NormalizeName", {"value": "world"}, outcome)
    task = history.task()
    with pytest.raises(DecisionDone, match="waiting for normalize#1"):
        Greeting(task).run()
    assert task.decisions == []


def test_greeting_normalized_schedules_greet_with_the_normalized_name():
    history = History(input='{"name": "  world ", "fail_attempts": 1}')
    history.activity("normalize#1", "NormalizeName", {"value": "  world "}, "completed", result="World")
    assert decide(Greeting, history) == [
        schedule("greet#1", "Greet", {"value": "World", "attempt": 1, "fail_attempts": 1})
    ]


@pytest.mark.parametrize(
    ("outcome", "attributes"),
    [
        ("failed", {"reason": "RuntimeError: attempt 1 fails on purpose"}),
        ("timed_out", {"timeoutType": "START_TO_CLOSE"}),
    ],
)
def test_greeting_retries_greet(outcome, attributes):
    history = History(input='{"name": "world", "fail_attempts": 1}')
    history.activity("normalize#1", "NormalizeName", {"value": "world"}, "completed", result="World")
    history.activity("greet#1", "Greet", {"value": "World"}, outcome, **attributes)
    assert decide(Greeting, history) == [
        schedule("greet#2", "Greet", {"value": "World", "attempt": 2, "fail_attempts": 1})
    ]


def test_greeting_fails_after_three_failures():
    history = History(input='{"name": "world", "fail_attempts": 5}')
    history.activity("normalize#1", "NormalizeName", {"value": "world"}, "completed", result="World")
    for attempt in (1, 2, 3):
        history.activity(
            f"greet#{attempt}", "Greet", {"value": "World"}, "failed", reason=f"RuntimeError: attempt {attempt}"
        )
    assert decide(Greeting, history) == [
        {
            "decisionType": "FailWorkflowExecution",
            "failWorkflowExecutionDecisionAttributes": {
                "reason": "greet failed 3 times",
                "details": "RuntimeError: attempt 3",
            },
        }
    ]


def test_greeting_completes_with_the_greeting():
    history = History(input='{"name": "world"}')
    history.activity("normalize#1", "NormalizeName", {"value": "world"}, "completed", result="World")
    history.activity("greet#1", "Greet", {"value": "World"}, "failed", reason="RuntimeError: once")
    history.activity("greet#2", "Greet", {"value": "World"}, "completed", result="Hello, World!")
    assert decide(Greeting, history) == [
        {
            "decisionType": "CompleteWorkflowExecution",
            "completeWorkflowExecutionDecisionAttributes": {"result": "Hello, World!"},
        }
    ]


# -- the greeting activities


def activity_task(name: str, input: dict) -> ActivityTask:
    return ActivityTask(
        {
            "taskToken": "token-1",
            "activityId": "x#1",
            "startedEventId": 6,
            "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
            "activityType": {"name": name, "version": "1.0"},
            "input": json.dumps(input),
        }
    )


def test_normalize_name():
    assert NormalizeName(activity_task("NormalizeName", {"value": "  wORLD "})).run() == "World"


def test_greet_fails_its_first_attempts_on_purpose():
    assert Greet(activity_task("Greet", {"value": "World", "attempt": 1})).run() == "Hello, World!"
    with pytest.raises(RuntimeError, match="attempt 1 fails on purpose"):
        Greet(activity_task("Greet", {"value": "World", "attempt": 1, "fail_attempts": 1})).run()
    assert Greet(activity_task("Greet", {"value": "World", "attempt": 2, "fail_attempts": 1})).run() == "Hello, World!"


def test_greeting_activities_serve_the_workflow_task_list():
    assert NormalizeName.default_task_list == Greet.default_task_list == ACTIVITY_TASK_LIST


# -- Demo


def demo_history(*signals: tuple[str, str | None]) -> History:
    """Started, the first decision (its timer), then the signals since."""
    history = History(input="1", workflow=("Demo", "0.1"))
    completed_by = history.decision()
    history.add(
        "TimerStarted", timerId="SignalTimeout", startToFireTimeout="300", decisionTaskCompletedEventId=completed_by
    )
    for name, input in signals:
        attributes = {"signalName": name}
        if input is not None:
            attributes["input"] = input
        history.add("WorkflowExecutionSignaled", **attributes)
    return history


def test_demo_start_starts_a_300_s_timer(capsys):
    history = History(input="1", workflow=("Demo", "0.1"))
    assert decide(Demo, history) == [
        {
            "decisionType": "StartTimer",
            "startTimerDecisionAttributes": {"startToFireTimeout": "300", "timerId": "SignalTimeout"},
        }
    ]
    assert "====   1 WorkflowExecutionStarted" in capsys.readouterr().out


def test_demo_print_signal_prints_its_input(capsys):
    assert decide(Demo, demo_history(("PRINT", "Hello World!"))) == []
    assert "The signal input is: 'Hello World!'" in capsys.readouterr().out


def test_demo_a_signal_is_acted_on_once(capsys):
    history = demo_history(("PRINT", "first"))
    history.decision()  # the decider saw it already
    history.add("WorkflowExecutionSignaled", signalName="PRINT", input="second")
    decide(Demo, history)
    out = capsys.readouterr().out
    assert "The signal input is: 'second'" in out
    assert "The signal input is: 'first'" not in out


def test_demo_stop_completes():
    assert decide(Demo, demo_history(("STOP", None))) == [
        {
            "decisionType": "CompleteWorkflowExecution",
            "completeWorkflowExecutionDecisionAttributes": {"result": '{"success": true}'},
        }
    ]


def test_demo_abort_fails():
    task = demo_history(("abort", None)).task()
    with pytest.raises(WorkflowFailure) as info:
        Demo(task).run()
    assert info.value.reason == "aborted"


def test_demo_timer_fired_loses_patience():
    history = demo_history()
    history.add("TimerFired", timerId="SignalTimeout", startedEventId=5)
    task = history.task()
    with pytest.raises(WorkflowFailure) as info:
        Demo(task).run()
    assert info.value.reason == "patience_lost"


def test_demo_unknown_signal_and_nothing_new(capsys):
    assert decide(Demo, demo_history(("DANCE", None))) == []
    assert "Unknown signal 'DANCE'" in capsys.readouterr().out
    history = demo_history()
    history.decision()
    task = history.task()
    with pytest.raises(DecisionDone, match="NothingNew"):
        Demo(task).run()


# -- LambdaDemo, through a Decider


class LambdaHarness:
    """A Decider serving LambdaDemo, on Stubber'd clients.

    moto has no Lambda tasks (ScheduleLambdaFunction leaves its execution
    stuck), so the decisions and the event handling are checked with
    botocore's Stubber: the respond must match what SWF's model accepts.
    """

    def __init__(self):
        self.sleeps: list[float] = []
        self.decider = Decider(
            swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"),
            "D",
            "lambda-demo",
            [LambdaDemo],
            register=False,
            sleep=self.sleeps.append,
        )
        endpoint = swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1")
        self.decider.poll_client = swf.make_client(endpoint, poll=True, session=SESSION)
        self.decider.client = swf.make_client(endpoint, session=SESSION)
        self.poll_stub = Stubber(self.decider.poll_client)
        self.stub = Stubber(self.decider.client)
        self.poll_stub.activate()
        self.stub.activate()

    def decide(self, history: History, expected_decisions: list[dict]):
        self.poll_stub.add_response("poll_for_decision_task", history.poll_response())
        self.stub.add_response(
            "respond_decision_task_completed", {}, {"taskToken": "token-1", "decisions": expected_decisions}
        )
        assert self.decider.run_once() is True
        self.poll_stub.assert_no_pending_responses()
        self.stub.assert_no_pending_responses()


def lambda_history(*after_scheduled: tuple[str, dict]) -> History:
    history = History(input='{"who": "SWF"}', workflow=("LambdaDemo", "1.0"))
    completed_by = history.decision()
    scheduled = history.add(
        "LambdaFunctionScheduled",
        id="hello",
        name=FUNCTION,
        input='{"who": "SWF"}',
        startToCloseTimeout="60",
        decisionTaskCompletedEventId=completed_by,
    )
    for event_type, attributes in after_scheduled:
        history.add(event_type, scheduledEventId=scheduled, **attributes)
    return history


def test_lambda_demo_schedules_the_function_with_the_input():
    h = LambdaHarness()
    h.decide(
        History(input='{"who": "SWF"}', workflow=("LambdaDemo", "1.0")),
        [
            {
                "decisionType": "ScheduleLambdaFunction",
                "scheduleLambdaFunctionDecisionAttributes": {
                    "id": "hello",
                    "name": "caravand-hello",
                    "input": '{"who": "SWF"}',
                    "startToCloseTimeout": "60",
                },
            }
        ],
    )
    assert h.decider.stats["completed"] == 1


def test_lambda_demo_waits_while_the_function_runs():
    h = LambdaHarness()
    h.decide(lambda_history(), [])
    h.decide(lambda_history(("LambdaFunctionStarted", {})), [])


def test_lambda_demo_completes_with_the_function_result():
    h = LambdaHarness()
    h.decide(
        lambda_history(
            ("LambdaFunctionStarted", {}),
            ("LambdaFunctionCompleted", {"result": '"Hello, SWF!"', "startedEventId": 8}),
        ),
        [
            {
                "decisionType": "CompleteWorkflowExecution",
                "completeWorkflowExecutionDecisionAttributes": {"result": '"Hello, SWF!"'},
            }
        ],
    )


def test_lambda_demo_fails_when_the_function_fails():
    h = LambdaHarness()
    h.decide(
        lambda_history(
            ("LambdaFunctionStarted", {}),
            ("LambdaFunctionFailed", {"reason": "Unhandled", "details": "KeyError: 'who'", "startedEventId": 8}),
        ),
        [
            {
                "decisionType": "FailWorkflowExecution",
                "failWorkflowExecutionDecisionAttributes": {"reason": "lambda failed", "details": "Unhandled"},
            }
        ],
    )
    assert h.decider.stats["workflow-failed"] == 1


def test_lambda_demo_fails_when_the_function_times_out():
    h = LambdaHarness()
    h.decide(
        lambda_history(
            ("LambdaFunctionStarted", {}),
            ("LambdaFunctionTimedOut", {"timeoutType": "START_TO_CLOSE", "startedEventId": 8}),
        ),
        [
            {
                "decisionType": "FailWorkflowExecution",
                "failWorkflowExecutionDecisionAttributes": {"reason": "lambda timed_out", "details": "START_TO_CLOSE"},
            }
        ],
    )


def test_lambda_demo_has_no_default_role():
    assert LambdaDemo.default_lambda_role is None
    assert "defaultLambdaRole" not in LambdaDemo.registration()
