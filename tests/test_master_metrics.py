"""The master's metrics, driven as test_master_unit drives the master: restarts by reason, gauges, reloads.

The families count into a registry of the test's own; a stand-in socket
tells the master that metrics are on (no child serves them here).
"""

from __future__ import annotations

import signal

import pytest
from prometheus_client import CollectorRegistry
from test_master_unit import boot_all, clock, exited, make_master, spawned, system, write_config  # noqa: F401

from caravand import metrics, protocol
from caravand.master import RESTART_REASONS
from caravand.states import ChildState


@pytest.fixture
def registry(monkeypatch):
    registry = CollectorRegistry()
    monkeypatch.setattr(metrics, "_families", metrics.Families(registry))
    return registry


@pytest.fixture
def master(tmp_path, system, registry):  # noqa: F811
    master = make_master(write_config(tmp_path, "max_tasks = 3\n"), system)
    master.metrics_socket = object()  # type: ignore[assignment]  # metrics on, served by nobody
    return master


def value(registry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def restarts(registry, reason: str) -> float:
    return value(registry, "caravand_child_restarts_total", pool="demo", reason=reason)


def test_restarts_are_counted_by_reason_and_a_stop_is_none(master, spawned, system, clock, registry):  # noqa: F811
    master.manage_pools(clock())
    master.export_metrics(clock())
    assert registry.get_sample_value("caravand_child_restarts_total", {"pool": "demo", "reason": "hung"}) == 0
    boot_all(master)
    first, second = spawned[0], spawned[1]
    clock.advance(100)
    system.exits.append((first.pid, exited(1)))
    master.reap()
    assert restarts(registry, "crash") == 1
    master.child_said(second, protocol.busy(ChildState.WORKING, clock() + 1), clock())
    clock.advance(60)
    master.watch_children(clock())  # far past its deadline: SIGABRT
    system.exits.append((second.pid, signal.SIGABRT))
    master.reap()
    assert restarts(registry, "hung") == 1 and restarts(registry, "crash") == 1
    master.manage_pools(clock())
    boot_all(master)
    recycled = spawned[2]
    for _ in range(3):  # max_tasks = 3
        master.child_said(recycled, protocol.done("completed"), clock())
    master.manage_pools(clock())  # its replacement is spawned first
    boot_all(master)
    master.manage_pools(clock())  # ...then it is retired
    system.exits.append((recycled.pid, exited(0)))
    master.reap()
    assert restarts(registry, "recycle") == 1
    master.handle_ttou()
    master.manage_pools(clock())
    [scaled] = [child for child in master.children.values() if child.retiring]
    system.exits.append((scaled.pid, exited(0)))
    master.reap()
    assert restarts(registry, "scale") == 1
    master.begin_stop("graceful")
    for child in list(master.children.values()):
        system.exits.append((child.pid, exited(0)))
    master.reap()
    assert sum(restarts(registry, reason) for reason in RESTART_REASONS) == 4  # the stop added none


def test_the_gauges_show_children_by_state_and_the_pools_state(master, spawned, clock, registry):  # noqa: F811
    master.manage_pools(clock())
    master.export_metrics(clock())
    assert value(registry, "caravand_children", pool="demo", state="booting") == 2
    assert value(registry, "caravand_pool_state", pool="demo", state="starting") == 1
    assert value(registry, "caravand_pool_target_children", pool="demo") == 2
    boot_all(master)
    master.child_said(spawned[0], protocol.busy(ChildState.POLLING, clock() + 70), clock())
    clock.advance(3)
    master.child_said(spawned[1], protocol.idle(), clock())
    master.export_metrics(clock())
    assert value(registry, "caravand_children", pool="demo", state="booting") == 0
    assert value(registry, "caravand_children", pool="demo", state="polling") == 1
    assert value(registry, "caravand_children", pool="demo", state="idle") == 1
    assert value(registry, "caravand_oldest_heartbeat_age_seconds", pool="demo") == 3


def test_the_gauges_are_written_at_most_once_a_second(master, spawned, clock, registry):  # noqa: F811
    """The loop passes many times a second with hundreds of children: the scan is not on every pass."""
    master.manage_pools(clock())
    master.export_metrics(clock())
    boot_all(master)
    clock.advance(0.5)
    master.export_metrics(clock())
    assert value(registry, "caravand_children", pool="demo", state="booting") == 2  # not yet
    clock.advance(0.5)
    master.export_metrics(clock())
    assert value(registry, "caravand_children", pool="demo", state="booting") == 0
    assert value(registry, "caravand_children", pool="demo", state="idle") == 2


def test_reloads_are_counted_ok_or_refused(master, spawned, clock, registry, tmp_path):  # noqa: F811
    master.refuse_reload("a bad key")
    master.apply_reload(master.config)
    assert value(registry, "caravand_reloads_total", result="refused") == 1
    assert value(registry, "caravand_reloads_total", result="ok") == 1
    assert value(registry, "caravand_last_reload_success_timestamp_seconds") > 0
