"""The metrics endpoint of a real caravand: what a scrape holds after a known workload, and how it fails.

Each test runs ``caravand`` on the session's moto server with metrics on a
free port, and reads ``/metrics`` as Prometheus would, through
``prometheus_client.parser``. ``RUNTIME_DIRECTORY`` points at the test's
own directory, so that the metrics files each process writes can be seen.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import urllib.error
import urllib.request

import pytest
from helpers import wait_for
from helpers import write_master_ini as write_ini
from prometheus_client.parser import text_string_to_metric_families
from test_master_e2e import (  # noqa: F401 - fixtures
    booted,
    caravand,
    client,
    event_types,
    master_env,
    pool_children,
    pool_section,
    wait_counts,
    wait_gone,
)

from caravand import metrics

pytestmark = pytest.mark.e2e

DOMAIN = "Metrics"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int, timeout: float = 5.0) -> dict[tuple[str, tuple], float]:
    """One scrape of ``/metrics``: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def greeting_pools(deciders: int = 1, workers: int = 2) -> list[str]:
    return [
        pool_section(
            "greeter",
            domain=DOMAIN,
            task_list="greeting",
            modules="caravand.examples.greeting",
            processes=deciders,
        ),
        pool_section(
            "workers",
            use="egg:caravand#activity",
            domain=DOMAIN,
            task_list="greeting-activities",
            modules="caravand.examples.greeting_activities",
            processes=workers,
        ),
    ]


def start_greetings(api, first: int, count: int) -> None:
    for number in range(first, first + count):
        api.start_workflow_execution(
            domain=DOMAIN,
            workflowId=f"greeting-{number}",
            workflowType={"name": "Greeting", "version": "1.0"},
            input=json.dumps({"name": f"n{number}"}),
        )


def completed_workflows(port: int, expected: int) -> dict:
    """Scrape until ``expected`` workflows were completed (counted by their last decision); the scrape."""
    return wait_for(
        lambda: (
            (samples := scrape(port))
            and total(samples, "caravand_decisions_total", decision_type="CompleteWorkflowExecution") >= expected
            and samples
        ),
        60,
        interval=0.2,
        message=f"{expected} CompleteWorkflowExecution decisions counted",
    )


def test_a_scrape_counts_every_task_of_a_known_workload_across_children_and_a_killed_one(
    caravand, endpoint, client, tmp_path
):
    port = free_port()
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *greeting_pools(), metrics_bind=f"127.0.0.1:{port}")
    master = caravand(ini, env=master_env(RUNTIME_DIRECTORY=str(tmp_path)))
    booted(master, "greeter#1")
    booted(master, "workers#1")
    booted(master, "workers#2")
    master.wait_output(f"metrics: http://127.0.0.1:{port}/metrics")
    [directory] = glob.glob(str(tmp_path / f"caravand-metrics-{master.pid}-*"))

    start_greetings(client, 1, 3)
    completed_workflows(port, 3)
    [(killed, _)] = wait_counts(master.pid, {"greeter": 1, "workers": 2})["greeter"].items()
    os.kill(killed, signal.SIGKILL)
    booted(master, "greeter#1", count=2)
    wait_gone([killed], 10, "the killed decider")
    start_greetings(client, 4, 4)
    samples = completed_workflows(port, 7)

    # What the dead decider counted stays; its live gauges went with it.
    assert os.path.exists(os.path.join(directory, f"counter_{killed}.db"))
    wait_for(lambda: not glob.glob(os.path.join(directory, f"gauge_live*_{killed}.db")), 5, message="gauges gone")
    for number in range(1, 8):
        assert "WorkflowExecutionCompleted" in event_types(client, DOMAIN, f"greeting-{number}")
    # A Greeting is 3 decision tasks (start, after each of its 2 activities) and 2 activity tasks.
    tasks = "caravand_tasks_total"
    assert total(samples, tasks, pool="greeter", type="Greeting", version="1.0", outcome="completed") == 21
    assert total(samples, tasks, pool="greeter") == 21
    assert total(samples, tasks, pool="workers", outcome="completed") == 14
    assert total(samples, tasks, pool="workers", type="NormalizeName", outcome="completed") == 7
    assert total(samples, "caravand_task_duration_seconds_count", pool="greeter") == 21
    assert total(samples, "caravand_decisions_total", pool="greeter", decision_type="ScheduleActivityTask") == 14
    assert total(samples, "caravand_decisions_total", decision_type="CompleteWorkflowExecution") == 7
    assert total(samples, "caravand_polls_total", pool="greeter", result="task") == 21
    assert total(samples, "caravand_polls_total", pool="workers", result="task") == 14
    assert total(samples, "caravand_swf_calls_total", operation="RespondDecisionTaskCompleted") == 21
    assert total(samples, "caravand_swf_calls_total", operation="RespondActivityTaskCompleted") == 14
    assert total(samples, "caravand_child_restarts_total", pool="greeter", reason="crash") == 1
    assert total(samples, "caravand_child_restarts_total", pool="workers") == 0
    # The master's gauges: the children it has now, by state; its pools' states and targets.
    assert total(samples, "caravand_children", pool="greeter") == 1
    assert total(samples, "caravand_children", pool="workers") == 2
    assert total(samples, "caravand_pool_target_children", pool="workers") == 2
    assert total(samples, "caravand_pool_state", pool="workers", state="fatal") == 0
    assert total(samples, "caravand_pool_state", pool="workers") == 1
    assert 0 <= total(samples, "caravand_oldest_heartbeat_age_seconds", pool="workers") < 10
    assert total(samples, "caravand_master_info", config=str(ini)) == 1
    assert total(samples, "caravand_last_reload_success_timestamp_seconds") > 0

    master.send(signal.SIGTERM)
    assert master.wait(40) == 0
    assert not os.path.exists(directory), "the metrics directory is removed at exit"


def test_a_port_in_use_fails_fast_with_exit_78(caravand, endpoint, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ini = write_ini(tmp_path / "caravan.ini", endpoint, *greeting_pools(), metrics_bind=f"127.0.0.1:{port}")
        master = caravand(ini)
        assert master.wait(20) == 78
    output = master.output()
    assert f"caravand: error: metrics_bind 127.0.0.1:{port}: Address already in use" in output
    assert "spawned:" not in output


def test_the_endpoint_answers_while_a_scraper_holds_a_connection_without_reading(caravand, endpoint, tmp_path):
    port = free_port()
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *greeting_pools(workers=1), metrics_bind=f"127.0.0.1:{port}")
    master = caravand(ini)
    booted(master, "workers#1")
    # The master writes its gauges once a second: wait for the one that shows the booted child.
    wait_for(
        lambda: total(scrape(port), "caravand_children", pool="workers") == 1, 10, message="a scrape with the child"
    )
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    greedy = socket.create_connection(("127.0.0.1", port))
    greedy.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)  # and never reads the answers
    try:
        for _ in range(5):
            assert total(scrape(port, timeout=3), "caravand_children", pool="workers") == 1
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=3)
        assert error.value.code == 404
    finally:
        for sock in [*silent, greedy]:
            sock.close()


def test_a_flood_of_connections_costs_the_metrics_child_no_more_than_its_cap_of_threads(caravand, endpoint, tmp_path):
    port = free_port()
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *greeting_pools(workers=1), metrics_bind=f"127.0.0.1:{port}")
    master = caravand(ini)
    said = f"metrics: http://127.0.0.1:{port}/metrics (pid "
    metrics_pid = int(master.wait_output(said).split(said, 1)[1].split(")")[0])
    scrape(port)
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(metrics.MAX_CONNECTIONS * 4)]
    try:
        # Each accepted connection waits for a request that never comes: the cap's threads, no more.
        wait_for(lambda: threads(metrics_pid) >= metrics.MAX_CONNECTIONS, 10, message="the cap's threads busy")
        assert threads(metrics_pid) <= metrics.MAX_CONNECTIONS + 2  # + the main and the accepting thread
    finally:
        for sock in flood:
            sock.close()
    assert total(wait_for(lambda: scrape_or_none(port), 15), "caravand_master_info") == 1  # serves again


def scrape_or_none(port: int):
    try:
        return scrape(port, timeout=3)
    except OSError:  # refused or reset while the flood's threads end
        return None


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_metrics_bind_empty_turns_metrics_off(caravand, endpoint, tmp_path):
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *greeting_pools(workers=1), metrics_bind="")
    master = caravand(ini, env=master_env(RUNTIME_DIRECTORY=str(tmp_path)))
    booted(master, "workers#1")
    assert "metrics:" not in master.output()
    assert not glob.glob(str(tmp_path / "caravand-metrics-*"))
    assert not any("caravand: metrics" in title for title in _titles(master.pid))


def _titles(pid: int) -> list[str]:
    from test_master_e2e import children_of

    return list(children_of(pid).values())


def test_a_task_failed_at_a_scale_downs_deadline_counts_as_worker_shutdown(caravand, endpoint, client, tmp_path):
    from test_master_e2e import file_text, schedule_activity

    port = free_port()
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        pool_section("slow", "egg:caravand#activity", domain="Slow", task_list="slow", modules="slow_activities"),
        graceful_timeout=21,  # the least with poll_timeout 1: SIGALRM 11 s after the child is retired
        metrics_bind=f"127.0.0.1:{port}",
    )
    master = caravand(ini)
    booted(master, "slow#1")
    schedule_activity(client, "Slow", "slow-1", "WaitForRelease", "slow", str(tmp_path))
    file_text(tmp_path / "started", message="the activity to start")
    master.send(signal.SIGTTOU)  # the pool goes to 0: its child is retired, and its task outlasts the deadline
    master.wait_output("exited: slow#1", timeout=30)
    samples = wait_for(  # the master writes its gauges later in the pass that logged the exit
        lambda: (samples := scrape(port)) and total(samples, "caravand_children", pool="slow") == 0 and samples,
        5,
        message="no child of slow left in caravand_children",
    )
    assert total(samples, "caravand_tasks_total", pool="slow", type="WaitForRelease", outcome="worker-shutdown") == 1
    assert total(samples, "caravand_tasks_total", pool="slow") == 1
    assert total(samples, "caravand_child_restarts_total", pool="slow", reason="scale") == 1
    assert total(samples, "caravand_children", pool="slow") == 0
    assert total(samples, "caravand_pool_target_children", pool="slow") == 0
