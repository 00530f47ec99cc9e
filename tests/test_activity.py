"""The activity authoring API: ActivityTask (input, heartbeat) and Activity (registration, intervals)."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.stub import Stubber
from stubs import offline_client

from caravand import Activity, ActivityCanceled, ActivityTask, activity
from caravand.activity import Heartbeater


def task_data(**overrides) -> dict:
    data = {
        "taskToken": "token-1",
        "activityId": "a1",
        "startedEventId": 6,
        "workflowExecution": {"workflowId": "wf-1", "runId": "run-1"},
        "activityType": {"name": "Work", "version": "1.0"},
        "input": '{"value": " world ", "n": [1, 2]}',
    }
    data.update(overrides)
    return data


@pytest.fixture
def stubbed():
    """A call client with botocore's Stubber active; every call must be queued first."""
    client = offline_client()
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_task_members():
    task = ActivityTask(task_data())
    assert task.token == "token-1"
    assert task.activity_id == "a1"
    assert (task.activity_type, task.activity_version) == ("Work", "1.0")
    assert (task.workflow_id, task.run_id) == ("wf-1", "run-1")
    assert task.started_event_id == 6
    assert task.input == '{"value": " world ", "n": [1, 2]}'
    assert task.input_json == {"value": " world ", "n": [1, 2]}
    assert not task.cancel_requested and not task.lost
    assert repr(task) == "<ActivityTask Work v=1.0 id=a1 workflow=wf-1>"


def test_task_without_input():
    data = task_data()
    del data["input"]
    task = ActivityTask(data)
    assert task.input is None
    assert task.input_json is None


def test_heartbeat_without_a_client_only_reports_the_flag():
    task = ActivityTask(task_data())
    assert task.heartbeat("50%") is False
    task.cancel_requested = True
    assert task.heartbeat() is True


def test_heartbeat_returns_cancel_requested(stubbed):
    client, stub = stubbed
    stub.add_response("record_activity_task_heartbeat", {"cancelRequested": False}, {"taskToken": "token-1"})
    stub.add_response(
        "record_activity_task_heartbeat", {"cancelRequested": False}, {"taskToken": "token-1", "details": "50%"}
    )
    stub.add_response(
        "record_activity_task_heartbeat", {"cancelRequested": True}, {"taskToken": "token-1", "details": "60%"}
    )
    stub.add_response("record_activity_task_heartbeat", {"cancelRequested": False}, {"taskToken": "token-1"})
    task = ActivityTask(task_data(), client)
    before = task.last_heartbeat

    assert task.heartbeat() is False  # no details: the parameter is left out
    assert task.last_heartbeat >= before
    assert task.heartbeat("50%") is False
    assert task.heartbeat("60%") is True
    assert task.cancel_requested
    # Once asked to cancel, the answer stays True.
    assert task.heartbeat() is True
    assert not task.lost


def test_heartbeat_details_are_cut_to_2048(stubbed):
    client, stub = stubbed
    details = "d" * 5000
    stub.add_response(
        "record_activity_task_heartbeat",
        {"cancelRequested": False},
        {"taskToken": "token-1", "details": activity.truncate(details, 2048)},
    )
    assert ActivityTask(task_data(), client).heartbeat(details) is False
    assert len(activity.truncate(details, 2048)) == 2048


def test_heartbeat_unknown_resource_means_lost(stubbed):
    client, stub = stubbed
    stub.add_client_error(
        "record_activity_task_heartbeat", service_error_code="UnknownResourceFault", service_message="Unknown task"
    )
    task = ActivityTask(task_data(), client)
    assert task.heartbeat("x") is True
    assert task.lost
    assert not task.cancel_requested
    # A lost task sends nothing more (the Stubber has no response queued).
    assert task.heartbeat("y") is True


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("InternalFailure", 500), ("OperationNotPermittedFault", 400)],
)
def test_heartbeat_other_errors_are_not_fatal(stubbed, code, status):
    client, stub = stubbed
    stub.add_client_error("record_activity_task_heartbeat", service_error_code=code, http_status_code=status)
    stub.add_response("record_activity_task_heartbeat", {"cancelRequested": True})
    task = ActivityTask(task_data(), client)
    before = task.last_heartbeat
    assert task.heartbeat() is False
    assert not task.lost and not task.cancel_requested
    assert task.last_heartbeat == before  # a failed heartbeat does not count
    # The next one goes through.
    assert task.heartbeat() is True


def test_heartbeater_stops_by_itself_when_cancel_is_requested(stubbed):
    client, stub = stubbed
    calls = []
    seen = threading.Event()

    def record(**kwargs):
        calls.append(kwargs["params"])
        seen.set()

    client.meta.events.register_first("before-parameter-build.swf.RecordActivityTaskHeartbeat", record)
    stub.add_response("record_activity_task_heartbeat", {"cancelRequested": True})
    task = ActivityTask(task_data(), client)
    heartbeater = Heartbeater(task, interval=0.05)
    heartbeater.start()
    assert seen.wait(5), "no automatic heartbeat"
    heartbeater.join(5)
    assert not heartbeater.is_alive(), "the heartbeat thread goes on after a cancel request"
    assert task.cancel_requested
    assert calls == [{"taskToken": "token-1"}]
    heartbeater.stop()  # safe after the thread ended


def test_activity_canceled():
    assert ActivityCanceled("stopping").details == "stopping"
    assert str(ActivityCanceled()) == "canceled"
    assert ActivityCanceled().details is None


# -- Activity


class Work(Activity):
    name = "Work"
    version = "1.0"
    description = "does work"
    default_task_list = "work"
    default_task_priority = 5
    default_task_schedule_to_start_timeout = "30"
    default_task_start_to_close_timeout = "60"
    default_task_schedule_to_close_timeout = "90"
    default_task_heartbeat_timeout = "10"

    def run(self):
        return self.task.input_json["value"].strip()


def test_activity_registration_params():
    assert Work.registration() == {
        "name": "Work",
        "version": "1.0",
        "description": "does work",
        "defaultTaskList": {"name": "work"},
        "defaultTaskPriority": "5",
        "defaultTaskScheduleToStartTimeout": "30",
        "defaultTaskStartToCloseTimeout": "60",
        "defaultTaskScheduleToCloseTimeout": "90",
        "defaultTaskHeartbeatTimeout": "10",
    }

    class Bare(Activity):
        name = "Bare"
        version = "1"

    # The base's defaults: 300 s to run, no other timeout.
    assert Bare.registration() == {
        "name": "Bare",
        "version": "1",
        "defaultTaskScheduleToStartTimeout": "NONE",
        "defaultTaskStartToCloseTimeout": "300",
        "defaultTaskScheduleToCloseTimeout": "NONE",
        "defaultTaskHeartbeatTimeout": "NONE",
    }


@pytest.mark.parametrize(
    ("timeout", "interval"),
    [("NONE", None), ("none", None), (None, None), ("10", 8.0), ("2", 1.6), (30, 24.0), ("1", 0.8)],
)
def test_heartbeat_interval_is_0_8_of_the_timeout(timeout, interval):
    class Beating(Activity):
        name = "Beating"
        version = "1"
        default_task_heartbeat_timeout = timeout

    if interval is None:
        assert Beating.heartbeat_interval() is None
    else:
        assert Beating.heartbeat_interval() == pytest.approx(interval)
        # Always strictly inside the timeout, or SWF times the task out.
        assert Beating.heartbeat_interval() < float(timeout)


def test_start_to_close_seconds():
    assert Work.start_to_close_seconds() == 60.0

    class Unbounded(Activity):
        name = "U"
        version = "1"
        default_task_start_to_close_timeout = "NONE"

    assert Unbounded.start_to_close_seconds() is None


def test_activity_run_reads_its_task():
    work = Work(ActivityTask(task_data()))
    assert work.run() == "world"
    assert repr(work) == "<Activity Work(1.0)>"

    class NotWritten(Activity):
        name = "N"
        version = "1"

    with pytest.raises(NotImplementedError, match="NotWritten.run"):
        NotWritten(ActivityTask(task_data())).run()


def test_heartbeater_waits_a_quarter_interval_after_a_failed_heartbeat():
    """A failed heartbeat is retried after interval/4, not in a hot loop."""
    from caravand.activity import Heartbeater

    task = ActivityTask(
        {
            "taskToken": "t",
            "activityId": "a",
            "activityType": {"name": "A", "version": "1"},
            "workflowExecution": {"workflowId": "w", "runId": "r"},
        }
    )
    beater = Heartbeater(task, interval=8.0)
    now = time.monotonic()
    task.last_heartbeat = now - 20  # long overdue
    assert beater._due_in(0.0) == pytest.approx(0.05)  # never tried: at once
    assert beater._due_in(now) == pytest.approx(2.0, abs=0.1)  # just failed: 8 / 4
    task.last_heartbeat = now  # it succeeded
    assert beater._due_in(now - 1) == pytest.approx(8.0, abs=0.1)
