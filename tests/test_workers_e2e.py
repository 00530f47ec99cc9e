"""caravan-decider and caravan-activity as real processes against a moto server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pathlib
import signal

import pytest
from helpers import run_cli, wait_for

from caravand import swf

pytestmark = pytest.mark.e2e

WORKLOADS = str(pathlib.Path(__file__).parent / "workloads")


@pytest.fixture
def client(endpoint):
    return swf.make_client(swf.Endpoint(endpoint_url=endpoint.url, region="us-east-1"))


def register_domain(client, name):
    client.register_domain(name=name, workflowExecutionRetentionPeriodInDays="1")


def history(client, domain, workflow_id):
    runs = client.list_open_workflow_executions(
        domain=domain, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id}
    )["executionInfos"]
    runs += client.list_closed_workflow_executions(
        domain=domain, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id}
    )["executionInfos"]
    run = [r for r in runs if r["execution"]["workflowId"] == workflow_id][-1]
    return client.get_workflow_execution_history(domain=domain, execution=run["execution"])["events"]


def closed_event(client, domain, workflow_id):
    """The execution's closing event (WorkflowExecutionCompleted, ...Failed, ...), or None while open."""
    for event in history(client, domain, workflow_id):
        if event["eventType"] in (
            "WorkflowExecutionCompleted",
            "WorkflowExecutionFailed",
            "WorkflowExecutionTerminated",
            "WorkflowExecutionTimedOut",
        ):
            return event
    return None


def test_seed_demo_verbatim(endpoint, client, spawn):
    """The seed README's demo, command for command."""
    done = run_cli("caravan-domain-register", "-n", "CaravanDemo", "--retention-days", "1")
    assert done.returncode == 0, done.stderr
    decider = spawn(
        "caravan-decider", "-d", "CaravanDemo", "-m", "caravand.examples.demo", "-t", "default", "--verbose"
    )
    decider.wait_output("polling: CaravanDemo/default")

    started = run_cli("caravan-start", "-d", "CaravanDemo", "-n", "Demo", "-v", "0.1", "-i", "1")
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: any(e["eventType"] == "TimerStarted" for e in history(client, "CaravanDemo", "1")),
        message="the Demo's timer",
    )
    listed = run_cli("caravan-list", "-d", "CaravanDemo", "--oldest", "2015-01-01")
    assert started.stdout.strip() in listed.stdout

    signaled = run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "PRINT", "--input", "Hello World!")
    assert signaled.returncode == 0, signaled.stderr
    decider.wait_output("The signal input is: 'Hello World!'")

    assert run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "STOP").returncode == 0
    completed = wait_for(lambda: closed_event(client, "CaravanDemo", "1"), message="the Demo to close")
    assert completed["eventType"] == "WorkflowExecutionCompleted"
    assert json.loads(completed["workflowExecutionCompletedEventAttributes"]["result"]) == {"success": True}

    decider.send(signal.SIGTERM)
    assert decider.wait(timeout=15) == 0
    assert "stopped: CaravanDemo/default" in decider.output()


def start_greeting(client, workflow_id, params):
    client.start_workflow_execution(
        domain="Greetings",
        workflowId=workflow_id,
        workflowType={"name": "Greeting", "version": "1.0"},
        input=json.dumps(params),
    )


@pytest.fixture
def greeting_fleet(endpoint, client, spawn):
    register_domain(client, "Greetings")
    decider = spawn(
        "caravan-decider", "-d", "Greetings", "-m", "caravand.examples.greeting", "-t", "greeting", "--verbose"
    )
    worker = spawn(
        "caravan-activity",
        "-d",
        "Greetings",
        "-m",
        "caravand.examples.greeting_activities",
        "-t",
        "greeting-activities",
        "--verbose",
    )
    decider.wait_output("polling: Greetings/greeting")
    worker.wait_output("polling: Greetings/greeting-activities")
    return decider, worker


def test_greeting_completes_with_its_result(client, greeting_fleet):
    start_greeting(client, "greet-1", {"name": "  world "})
    closed = wait_for(lambda: closed_event(client, "Greetings", "greet-1"), timeout=60, message="greet-1 to close")
    assert closed["eventType"] == "WorkflowExecutionCompleted"
    assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "Hello, World!"


def test_activity_that_raises_once_succeeds_on_retry(client, greeting_fleet):
    start_greeting(client, "greet-2", {"name": "retry", "fail_attempts": 1})
    closed = wait_for(lambda: closed_event(client, "Greetings", "greet-2"), timeout=60, message="greet-2 to close")
    assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "Hello, Retry!"
    failures = [e for e in history(client, "Greetings", "greet-2") if e["eventType"] == "ActivityTaskFailed"]
    assert len(failures) == 1
    assert "attempt 1 fails on purpose" in failures[0]["activityTaskFailedEventAttributes"]["reason"]
    _, worker = greeting_fleet
    assert "RuntimeError: attempt 1 fails on purpose" in worker.output()


def test_sigterm_during_an_activity_finishes_and_answers_it(client, spawn, tmp_path):
    """SIGTERM while run() works: the task is completed and answered, then the worker exits 0."""
    register_domain(client, "Slow")
    env = dict(os.environ, PYTHONPATH=WORKLOADS, PYTHONUNBUFFERED="1")
    decider = spawn(
        "caravan-decider", "-d", "Slow", "-m", "slow_workflow", "-t", "slow-decisions", "--verbose", env=env
    )
    worker = spawn("caravan-activity", "-d", "Slow", "-m", "slow_activities", "-t", "slow", "--verbose", env=env)
    decider.wait_output("polling: Slow/slow-decisions")
    worker.wait_output("polling: Slow/slow")
    client.start_workflow_execution(
        domain="Slow", workflowId="slow-1", workflowType={"name": "SlowOne", "version": "1.0"}, input=str(tmp_path)
    )
    wait_for(lambda: (tmp_path / "started").exists(), timeout=30, message="the activity to start")
    assert int((tmp_path / "started").read_text()) == worker.pid

    worker.send(signal.SIGTERM)
    # Had the worker died of it, the task would go unanswered and the exit be -15.
    assert worker.process.poll() is None
    (tmp_path / "release").write_text("go")
    assert worker.wait(timeout=30) == 0

    events = history(client, "Slow", "slow-1")
    completed = [e for e in events if e["eventType"] == "ActivityTaskCompleted"]
    assert [e["activityTaskCompletedEventAttributes"]["result"] for e in completed] == ["released"]
    closed = wait_for(lambda: closed_event(client, "Slow", "slow-1"), timeout=30, message="slow-1 to close")
    assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "released"
    assert "stopped: Slow/slow (completed 1" in worker.output()
