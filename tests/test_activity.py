"""The activity authoring API: ActivityTask (input, heartbeat) and Activity (registration, intervals)."""

from __future__ import annotations

import threading

import pytest
from botocore.stub import Stubber
from stubs import offline_client

from caravand import Activity, ActivityCanceled, ActivityTask
from caravand.activity import Heartbeater
from caravand.values import truncate


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


def record_calls(client) -> list[dict]:
    """The params of every heartbeat the client sends, as they go."""
    calls: list[dict] = []
    client.meta.events.register_first(
        "before-parameter-build.swf.RecordActivityTaskHeartbeat", lambda params, **kwargs: calls.append(dict(params))
    )
    return calls


def test_heartbeat_records_and_returns_at_once_the_thread_sends(stubbed):
    """heartbeat() makes no call: run() never waits on the network; one heartbeat carries the latest details."""
    client, stub = stubbed
    calls = record_calls(client)
    task = ActivityTask(task_data(), client)
    assert task.heartbeat("50%") is False
    assert task.heartbeat("60%") is False
    assert calls == []  # before: one call each, with a lock held across it
    assert task.pending()

    stub.add_response(
        "record_activity_task_heartbeat", {"cancelRequested": True}, {"taskToken": "token-1", "details": "60%"}
    )
    before = task.last_heartbeat
    Heartbeater(task, None).beat()
    assert not task.pending()
    assert task.last_heartbeat >= before
    # What that heartbeat learned shows in the next call, and stays.
    assert task.heartbeat() is True
    assert task.heartbeat("70%") is True
    assert task.cancel_requested and not task.lost


def test_heartbeat_details_are_cut_to_2048(stubbed):
    client, stub = stubbed
    details = "d" * 5000
    stub.add_response(
        "record_activity_task_heartbeat",
        {"cancelRequested": False},
        {"taskToken": "token-1", "details": truncate(details, 2048)},
    )
    task = ActivityTask(task_data(), client)
    assert task.heartbeat(details) is False
    Heartbeater(task, None).beat()
    assert len(truncate(details, 2048)) == 2048


def test_heartbeat_unknown_resource_means_lost(stubbed):
    client, stub = stubbed
    stub.add_client_error(
        "record_activity_task_heartbeat", service_error_code="UnknownResourceFault", service_message="Unknown task"
    )
    task = ActivityTask(task_data(), client)
    beater = Heartbeater(task, 30.0)
    beater.beat()
    assert task.lost
    assert not task.cancel_requested
    assert task.heartbeat("y") is True
    # A lost task sends nothing more: the thread ends (the Stubber has no response queued).
    beater.run()


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("InternalFailure", 500), ("OperationNotPermittedFault", 400)],
)
def test_heartbeat_other_errors_are_not_fatal(stubbed, code, status):
    client, stub = stubbed
    stub.add_client_error("record_activity_task_heartbeat", service_error_code=code, http_status_code=status)
    stub.add_response("record_activity_task_heartbeat", {"cancelRequested": True})
    task = ActivityTask(task_data(), client)
    beater = Heartbeater(task, 30.0)
    before = task.last_heartbeat
    beater.beat()
    assert not task.lost and not task.cancel_requested
    assert task.last_heartbeat == before  # a failed heartbeat does not count
    assert beater.retry_at is not None  # ...and is retried soon
    beater.beat()  # the next one goes through
    assert task.heartbeat() is True
    assert beater.retry_at is None


def test_start_heartbeats_without_a_client_starts_nothing():
    task = ActivityTask(task_data())
    task.start_heartbeats(3.0)
    assert task.heartbeat("x") is False
    task.stop_heartbeats()
    assert not [t for t in threading.enumerate() if t.name == "heartbeat-a1"]


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
    [("NONE", None), ("none", None), (None, None), ("0", None), ("10", 10 / 3), ("2", 2 / 3), (30, 10.0), ("1", 1 / 3)],
)
def test_heartbeat_interval_is_a_third_of_the_timeout(timeout, interval):
    class Beating(Activity):
        name = "Beating"
        version = "1"
        default_task_heartbeat_timeout = timeout

    if interval is None:
        assert Beating.heartbeat_interval() is None
        assert Beating.heartbeat_timeout_seconds() is None
    else:
        assert Beating.heartbeat_timeout_seconds() == float(timeout)
        assert Beating.heartbeat_interval() == pytest.approx(interval)
        # Two more heartbeats fit before the timeout: one may fail and be retried.
        assert Beating.heartbeat_interval() * 3 <= float(timeout) + 1e-9


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
