"""caravand.metrics: the families, the children's recorder, the SWF call counts, the directory and the bind.

Each test counts into a CollectorRegistry of its own (in-process values:
the multiprocess files are the end-to-end tests' business).
"""

from __future__ import annotations

import os
import socket
import sys
import types

import pytest
from prometheus_client import CollectorRegistry
from stubs import RecordingHooks, StubbedPoller

from caravand import metrics
from caravand.activity_worker import ActivityWorker
from caravand.poller import Fanout
from caravand.swf import CaravanError, ConfigError


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def families(registry):
    return metrics.Families(registry)


def value(registry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_every_family_is_named_caravand_and_documented(registry, families):
    names = {family.name: family for family in registry.collect()}
    assert set(names) == {
        "caravand_polls",
        "caravand_poll_duration_seconds",
        "caravand_tasks",
        "caravand_task_duration_seconds",
        "caravand_decisions",
        "caravand_swf_calls",
        "caravand_swf_errors",
        "caravand_children",
        "caravand_pool_target_children",
        "caravand_pool_min_children",
        "caravand_pool_max_children",
        "caravand_pool_backlog",
        "caravand_scale_steps",
        "caravand_child_restarts",
        "caravand_pool_state",
        "caravand_oldest_heartbeat_age_seconds",
        "caravand_master_info",
        "caravand_reloads",
        "caravand_last_reload_success_timestamp_seconds",
    }
    assert all(family.documentation for family in names.values())


def test_the_recorder_counts_tasks_by_type_and_outcome_and_decisions_by_type(registry, families):
    recorder = metrics.Recorder("greeter", "decider", "D", "greeting", families)
    decision = types.SimpleNamespace(
        workflow_type="Greeting",
        workflow_version="1.0",
        decisions=[{"decisionType": "ScheduleActivityTask"}, {"decisionType": "CompleteWorkflowExecution"}],
    )
    activity = types.SimpleNamespace(activity_type="Greet", activity_version="1.0")
    recorder.task_ended(None, decision, "completed", 0.2)
    recorder.task_ended(None, decision, "stale", 0.3)
    metrics.Recorder("workers", "activity", "D", "acts", families).task_ended(None, activity, "worker-shutdown", 4.0)
    where = {"pool": "greeter", "kind": "decider", "domain": "D", "task_list": "greeting"}
    task = {"type": "Greeting", "version": "1.0"}
    assert value(registry, "caravand_tasks_total", **where, **task, outcome="completed") == 1
    assert value(registry, "caravand_tasks_total", **where, **task, outcome="stale") == 1
    assert value(registry, "caravand_task_duration_seconds_count", pool="greeter", kind="decider", **task) == 2
    assert value(registry, "caravand_task_duration_seconds_sum", pool="greeter", kind="decider", **task) == 0.5
    assert value(registry, "caravand_decisions_total", pool="greeter", decision_type="ScheduleActivityTask") == 2
    assert value(registry, "caravand_decisions_total", pool="greeter", decision_type="CompleteWorkflowExecution") == 2
    activity_labels = {"pool": "workers", "kind": "activity", "domain": "D", "task_list": "acts"}
    assert (
        value(
            registry, "caravand_tasks_total", **activity_labels, type="Greet", version="1.0", outcome="worker-shutdown"
        )
        == 1
    )


class Harness(StubbedPoller):
    poll_operation = "poll_for_activity_task"
    empty_poll = {"startedEventId": 0}


def test_polls_are_counted_by_result_and_swf_calls_by_operation_and_error_code(registry, families):
    recorder = metrics.Recorder("workers", "activity", "D", "acts", families)
    harness = Harness(ActivityWorker, "acts", [], identity="w", hooks=Fanout(RecordingHooks(), recorder))
    metrics.count_api_calls(harness.poller.poll_client, families)
    harness.add_empty_poll()
    harness.add_poll_error("ThrottlingException")
    harness.add_poll_error("AccessDeniedException")
    harness.add_empty_poll()
    for _ in range(4):
        harness.poller.run_once()
    harness.assert_done()
    where = {"pool": "workers", "kind": "activity", "domain": "D", "task_list": "acts"}
    assert value(registry, "caravand_polls_total", **where, result="empty") == 2
    assert value(registry, "caravand_polls_total", **where, result="throttled") == 1
    assert value(registry, "caravand_polls_total", **where, result="error") == 1
    assert value(registry, "caravand_poll_duration_seconds_count", pool="workers", kind="activity") == 4
    assert value(registry, "caravand_swf_calls_total", operation="PollForActivityTask") == 4
    errors = "caravand_swf_errors_total"
    assert value(registry, errors, operation="PollForActivityTask", code="ThrottlingException") == 1
    assert value(registry, errors, operation="PollForActivityTask", code="AccessDeniedException") == 1


def test_a_call_that_gets_no_answer_is_counted_with_its_exception_as_the_code(registry, families):
    """No answer at all (connection refused): botocore's after-call-error, which carries no operation model."""
    from caravand import swf

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once the probe closes
    client = swf.make_client(
        swf.Endpoint(endpoint_url=f"http://127.0.0.1:{closed_port}", region="us-east-1"), max_attempts=1
    )
    metrics.count_api_calls(client, families)
    with pytest.raises(Exception) as error:
        client.list_domains(registrationStatus="REGISTERED")
    assert type(error.value).__name__ == "EndpointConnectionError"  # the network's error, not the handler's
    assert value(registry, "caravand_swf_calls_total", operation="ListDomains") == 1
    errors = "caravand_swf_errors_total"
    assert value(registry, errors, operation="ListDomains", code="EndpointConnectionError") == 1


def test_fanout_gives_each_event_to_every_hook_in_order():
    seen: list[str] = []

    class Named(RecordingHooks):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def poll_result(self, poller, result, seconds):
            seen.append(f"{self.name}:{result}")

    Fanout(Named("a"), Named("b")).poll_result(None, "empty", 1.0)
    assert seen == ["a:empty", "b:empty"]


def test_a_port_in_use_is_a_configuration_error_that_names_metrics_bind():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as error:
            metrics.bind(f"127.0.0.1:{port}")
    assert error.value.exit_code == 78
    assert str(error.value).startswith(f"metrics_bind 127.0.0.1:{port}: Address already in use")


def test_bind_listens_on_the_address_given():
    sock = metrics.bind("127.0.0.1:0")
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
        socket.create_connection(sock.getsockname()).close()  # it listens: no accept needed to connect
    finally:
        sock.close()


def test_the_directory_is_not_set_once_prometheus_client_is_imported(monkeypatch, tmp_path, caplog):
    assert "prometheus_client" in sys.modules  # this module imported it
    monkeypatch.delenv(metrics.ENV, raising=False)
    assert metrics.prepare(os.getpid()) is None
    assert not metrics.enabled()
    assert "metrics: off (prometheus_client was imported" in caplog.text


def test_the_directory_is_private_and_a_dead_masters_is_removed(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    monkeypatch.delitem(sys.modules, "prometheus_client")  # as in a master's main: not imported yet
    monkeypatch.delenv(metrics.ENV, raising=False)
    leftover = tmp_path / f"{metrics.DIR_PREFIX}999999999-x"  # no such pid
    leftover.mkdir()
    path = metrics.prepare(4242)
    try:
        assert path is not None and os.environ[metrics.ENV] == path
        assert os.path.basename(path).startswith(f"{metrics.DIR_PREFIX}4242-")
        assert os.path.dirname(path) == str(tmp_path)
        assert not leftover.exists()
        assert os.stat(path).st_mode & 0o777 == 0o700
    finally:
        metrics.remove_dir()
    assert not os.path.exists(path) and metrics.ENV not in os.environ


def test_a_task_failed_at_a_stops_deadline_counts_once_as_worker_shutdown(registry, families):
    recorder = metrics.Recorder("workers", "activity", "D", "acts", families)
    task = types.SimpleNamespace(activity_type="Slow", activity_version="1.0")
    recorder.task_failed_at_shutdown()  # nothing in hand: nothing counted
    recorder.task_started(None, task, None)
    recorder.task_failed_at_shutdown()
    recorder.task_failed_at_shutdown()
    recorder.task_ended(None, task, "abandoned", 9.0)  # the loop, should it get that far before the exit
    where = {
        "pool": "workers",
        "kind": "activity",
        "domain": "D",
        "task_list": "acts",
        "type": "Slow",
        "version": "1.0",
    }
    assert value(registry, "caravand_tasks_total", **where, outcome="worker-shutdown") == 1
    assert value(registry, "caravand_tasks_total", **where, outcome="abandoned") == 0
    recorder.task_started(None, task, None)
    recorder.task_ended(None, task, "completed", 1.0)  # the next task counts as usual
    assert value(registry, "caravand_tasks_total", **where, outcome="completed") == 1


def test_a_directory_that_cannot_be_made_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "missing"))
    monkeypatch.delitem(sys.modules, "prometheus_client")
    monkeypatch.delenv(metrics.ENV, raising=False)
    with pytest.raises(CaravanError) as error:
        metrics.prepare(4242)
    assert error.value.exit_code == 1
    assert str(error.value).startswith(f"metrics: cannot make its directory in {tmp_path / 'missing'}")
    assert "No such file or directory (set metrics_bind empty to run without metrics)" in str(error.value)
    assert metrics.ENV not in os.environ
