"""Autoscaling end to end: a real caravand on the session's moto server grows a pool on a burst and shrinks it.

The activities wait for a release file (workloads/slow_activities.py), so
that the backlog is there for as long as the test needs it, whatever the
machine's speed: a burst of SlowOne workflows leaves one task in hand and
the rest pending; the pool must grow to its MAX, run them all once released,
and shrink back to its MIN once idle, with no task lost or timed out.
"""

from __future__ import annotations

import pytest
from helpers import wait_for
from helpers import write_master_ini as write_ini
from test_master_e2e import (  # noqa: F401 - fixtures
    booted,
    caravand,
    client,
    event_types,
    master_env,
    pool_section,
)
from test_metrics_e2e import free_port, scrape, total

pytestmark = pytest.mark.e2e

DOMAIN = "Scaling"
BURST = 6


def scaling_pools(processes: str = "1..3") -> list[str]:
    return [
        pool_section("decider", domain=DOMAIN, task_list="slow-decisions", modules="slow_workflow", processes=1),
        pool_section(
            "workers",
            use="egg:caravand#activity",
            domain=DOMAIN,
            task_list="slow",
            modules="slow_activities",
            processes=processes,
            backlog_interval=0.5,
            scale_up_backlog=1,
            scale_up_after=1,
            scale_down_after=3,
            scale_cooldown=1,
        ),
    ]


def test_a_burst_grows_the_pool_to_max_and_idleness_shrinks_it_to_min_with_no_task_lost(
    caravand, endpoint, client, tmp_path
):
    port = free_port()
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *scaling_pools(), metrics_bind=f"127.0.0.1:{port}")
    master = caravand(ini)
    booted(master, "decider#1")
    booted(master, "workers#1")
    master.wait_output("backlog counter: decider every 30 s, workers every 0.5 s")
    for number in range(BURST):
        client.start_workflow_execution(
            domain=DOMAIN,
            workflowId=f"burst-{number}",
            workflowType={"name": "SlowOne", "version": "1.0"},
            input=str(tmp_path),
        )
    master.wait_output("scale: workers up from 1 to 3 (backlog", timeout=30)
    booted(master, "workers#3")
    samples = wait_for(
        lambda: (s := scrape(port)) and total(s, "caravand_children", pool="workers", state="working") == 3 and s,
        30,
        message="3 workers working",
    )
    assert total(samples, "caravand_pool_target_children", pool="workers") == 3
    assert total(samples, "caravand_pool_max_children", pool="workers") == 3
    assert total(samples, "caravand_pool_min_children", pool="workers") == 1
    assert total(samples, "caravand_scale_steps_total", pool="workers", direction="up", reason="backlog") == 1
    # Counted as SWF counts: the tasks waiting, not the 3 in hand (the gauge lags by one count at most).
    wait_for(lambda: total(scrape(port), "caravand_pool_backlog", pool="workers") == BURST - 3, 10,
             message=f"a backlog of {BURST - 3}")  # fmt: skip
    (tmp_path / "release").write_text("")
    master.wait_output("scale: workers down from 2 to 1", timeout=60)
    samples = wait_for(
        lambda: (
            (s := scrape(port))
            and total(s, "caravand_decisions_total", decision_type="CompleteWorkflowExecution") == BURST
            and total(s, "caravand_pool_target_children", pool="workers") == 1
            and total(s, "caravand_child_restarts_total", pool="workers", reason="scale") == 2  # both exited
            and s
        ),
        30,
        message=f"{BURST} workflows completed and the pool back at 1",
    )
    assert total(samples, "caravand_scale_steps_total", pool="workers", direction="down", reason="idle") == 2
    assert total(samples, "caravand_tasks_total", pool="workers", outcome="completed") == BURST
    assert total(samples, "caravand_child_restarts_total", pool="workers", reason="scale") == 2
    assert "crashed:" not in master.output() and "killing:" not in master.output()  # drained, never killed
    for number in range(BURST):
        events = event_types(client, DOMAIN, f"burst-{number}")
        assert events.count("ActivityTaskCompleted") == 1 and "WorkflowExecutionCompleted" in events
        assert "ActivityTaskTimedOut" not in events and "DecisionTaskTimedOut" not in events
