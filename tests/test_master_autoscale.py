"""The master's backlog counter and autoscaling (caravand.master, caravand.autoscale) on a fake clock.

The counter's lines are fed to ``Master.counter_line`` as the pipe would
bring them; children are the recorder of test_master_unit (no fork). The
counter's own life (fork, silence, death) uses a fake fork that returns a pid.
"""

from __future__ import annotations

import selectors
import signal

import pytest
from test_master_unit import (  # noqa: F401 - fixtures
    boot_all,
    clock,
    exited,
    fake_reload_check_passed,
    logged,
    make_master,
    spawned,
    system,
)

from caravand import backlog, config, protocol
from caravand.master import Counter, Master
from caravand.states import ChildState

SCALED = """
[caravand]
endpoint_url = http://127.0.0.1:4599
poll_timeout = 1
graceful_timeout = 50
metrics_bind =

[pool:work]
use = egg:caravand#activity
domain = CaravanDemo
task_list = work
modules = caravand.examples.greeting_activities
processes = {processes}
backlog_interval = 5
{scaling}
[pool:fixed]
use = egg:caravand#decider
domain = CaravanDemo
task_list = default
modules = caravand.examples.demo
processes = 1
"""
SCALING = "scale_up_backlog = 2\nscale_up_after = 10\nscale_down_after = 60\nscale_cooldown = 20\n"


def write(tmp_path, processes="2..6", scaling=SCALING) -> config.Config:
    path = tmp_path / "caravan.ini"
    path.write_text(SCALED.format(processes=processes, scaling=scaling))
    return config.load(str(path))


@pytest.fixture
def master(tmp_path, system):
    return make_master(write(tmp_path), system)


def count(master: Master, pool: str, pending: int | None) -> None:
    """The counter says ``pool``'s backlog, as its pipe would bring it."""
    master.counter_line(Counter(9999, -1, (), master.now()), protocol.backlog(pool, pending))


def states(master: Master, pool: str, *wanted: ChildState) -> None:
    for child, state in zip(sorted(master.pools[pool].active(), key=lambda c: c.index), wanted, strict=True):
        child.state = state


def test_an_autoscaled_pool_starts_at_its_min_and_grows_on_a_backlog_that_lasts(master, spawned, clock, logged):
    pool = master.pools["work"]
    master.manage_pools(clock())
    assert pool.target == 2 and len(pool.active()) == 2
    boot_all(master)
    logged()
    count(master, "work", 9)  # 4.5 per child, above 2: pressure from now
    clock.advance(5)
    count(master, "work", 9)
    master.manage_pools(clock())
    assert pool.target == 2, "above for 5 s of the 10 it must last"
    clock.advance(5)
    count(master, "work", 9)
    master.manage_pools(clock())
    assert pool.target == 5  # ceil(9 / 2): the size the backlog asks for
    assert len(pool.active()) == 5
    assert "INFO scale: work up from 2 to 5 (backlog 9, 4.5 per child, above 2 per child for 10 s)" in logged()


def test_a_backlog_that_drops_or_cannot_be_counted_grows_nothing(master, spawned, clock):
    pool = master.pools["work"]
    master.manage_pools(clock())
    for pending in (9, 4, 9, None, 9):  # 4 is 2 per child: not above; None: the count failed
        count(master, "work", pending)
        clock.advance(6)
        master.manage_pools(clock())
    assert pool.target == 2


def test_growth_stops_at_max_and_waits_for_the_cooldown(master, spawned, clock):
    pool = master.pools["work"]
    master.manage_pools(clock())
    count(master, "work", 500)
    clock.advance(10)
    count(master, "work", 500)
    master.manage_pools(clock())
    assert pool.target == 6  # MAX, not 250


def test_spare_children_shrink_the_pool_one_at_a_time_and_the_spare_go_first(master, spawned, system, clock, logged):
    pool = master.pools["work"]
    master.handle_ttin()  # 3
    master.manage_pools(clock())
    boot_all(master)
    clock.advance(20)  # past the cooldown of the TTIN step
    states(master, "work", ChildState.WORKING, ChildState.WORKING, ChildState.WORKING)
    master.manage_pools(clock())  # all busy: none was spare until now
    states(master, "work", ChildState.POLLING, ChildState.WORKING, ChildState.WORKING)
    master.manage_pools(clock())
    logged()
    clock.advance(59)
    master.manage_pools(clock())
    assert pool.target == 3, "spare for 59 s of the 60"
    clock.advance(1)
    master.manage_pools(clock())
    assert pool.target == 2
    first = min(pool.children.values(), key=lambda c: c.index)
    assert first.retiring and first.ended_by == "scale"  # the polling one, not a working one
    assert [signum for pid, signum in system.killed if pid == first.pid] == [signal.SIGTERM]  # drained, not killed
    assert logged() == [
        "INFO scale: work down from 3 to 2 (a child was spare for 60 s and no task waited)",
        f"INFO retiring: work#1 (pid {first.pid}, scaled down)",
    ]
    clock.advance(59)
    master.manage_pools(clock())
    assert pool.target == 2, "the next step needs another 60 s of spare"


def test_all_busy_or_a_waiting_task_keeps_the_children(master, spawned, clock):
    pool = master.pools["work"]
    master.handle_ttin()
    master.manage_pools(clock())
    boot_all(master)
    clock.advance(20)
    for _ in range(4):
        states(master, "work", ChildState.POLLING, ChildState.WORKING, ChildState.WORKING)
        master.manage_pools(clock())
        clock.advance(30)
        states(master, "work", ChildState.WORKING, ChildState.WORKING, ChildState.WORKING)
        master.manage_pools(clock())  # all busy: no child was spare the whole time
    assert pool.target == 3
    states(master, "work", ChildState.POLLING, ChildState.POLLING, ChildState.POLLING)
    for _ in range(4):
        clock.advance(30)
        count(master, "work", 1)  # a task waited: not spare, whatever the states say
        master.manage_pools(clock())
    assert pool.target == 3


def test_ttin_and_ttou_move_an_autoscaled_target_within_its_bounds(master, spawned, clock, logged):
    work, fixed = master.pools["work"], master.pools["fixed"]
    for _ in range(6):
        master.handle_ttin()
    assert (work.target, fixed.target) == (6, 7)  # MAX; the fixed pool up to max_processes
    assert "WARNING scale: work stays at 6 (TTIN): its processes' MAX is 6" in logged()
    for _ in range(6):
        master.handle_ttou()
    assert (work.target, fixed.target) == (2, 1)
    assert "WARNING scale: work stays at 2 (TTOU): its processes' MIN is 2" in logged()


def test_a_signal_step_starts_the_cooldown(master, spawned, clock):
    pool = master.pools["work"]
    master.manage_pools(clock())
    master.handle_ttin()  # 3, at 5000
    count(master, "work", 100)
    clock.advance(10)
    count(master, "work", 100)
    master.manage_pools(clock())
    assert pool.target == 3, "within 20 s of the TTIN"
    clock.advance(10)
    count(master, "work", 100)
    master.manage_pools(clock())
    assert pool.target == 6


def test_a_reload_keeps_the_target_within_the_new_bounds(master, spawned, clock, tmp_path, monkeypatch):
    monkeypatch.setattr(Master, "start_reload_check", fake_reload_check_passed)
    pool = master.pools["work"]
    master.manage_pools(clock())
    for _ in range(3):
        master.handle_ttin()
    assert pool.target == 5
    write(tmp_path, "1..3")
    master.reload()
    assert master.pools["work"] is pool, "resized in place, not replaced"
    assert pool.target == 3 and pool.autoscaler is not None and pool.autoscaler.spec.scale_max == 3
    write(tmp_path, "4", scaling="")
    master.reload()
    assert master.pools["work"] is pool and pool.target == 4 and pool.autoscaler is None
    write(tmp_path, "2..8")
    master.reload()
    assert pool.target == 4 and pool.autoscaler is not None  # the running count, now within 2..8


def test_what_is_counted_autoscaled_pools_always_every_pool_with_metrics(master):
    assert [t.pool for t in master.backlog_targets()] == ["work"]
    assert master.backlog_targets()[0] == backlog.Target("work", "activity", "CaravanDemo", "work", 5.0)
    master.metrics_socket = object()  # metrics on: the fixed pool's backlog is a gauge too
    assert [t.pool for t in master.backlog_targets()] == ["work", "fixed"]
    master.stopping = "graceful"
    assert master.backlog_targets() == ()


def test_a_count_for_a_pool_a_reload_removed_is_ignored(master):
    count(master, "gone", 5)
    count(master, "work", 7)
    assert master.pools["work"].backlog == 7
    count(master, "work", None)
    assert master.pools["work"].backlog is None


@pytest.fixture
def forks(master, monkeypatch):
    """Master.fork returns fake pids (the parent's side runs: pipe, selector); the pids it gave."""
    pids: list[int] = []
    master.selector = selectors.DefaultSelector()

    def fake_fork(pool, *fds, failed_start=True):
        pids.append(7000 + len(pids))
        return pids[-1]

    monkeypatch.setattr(master, "fork", fake_fork)
    yield pids
    if master.counter is not None:
        master.unregister(master.counter)
    master.selector.close()


def test_one_counter_is_forked_and_replaced_when_the_pools_change(master, forks, system, clock, tmp_path, monkeypatch):
    master.manage_backlog(clock())
    master.manage_backlog(clock())
    assert forks == [7000] and master.counter is not None and master.counter.targets == master.backlog_targets()
    monkeypatch.setattr(Master, "start_reload_check", fake_reload_check_passed)
    write(tmp_path, "2..6", scaling=SCALING.replace("scale_cooldown = 20", "scale_cooldown = 30"))
    master.reload()
    master.manage_backlog(clock())
    assert forks == [7000], "the counted targets are the same"
    write(tmp_path, "4", scaling="")
    master.reload()
    master.manage_backlog(clock())
    assert (7000, signal.SIGKILL) in system.killed, "nothing left to count: it goes"
    system.exits.append((7000, signal.SIGKILL))
    master.reap()
    assert master.counter is None
    master.manage_backlog(clock())
    assert forks == [7000]


def test_a_silent_counter_is_killed_and_forked_again_after_a_pause(master, forks, system, clock, logged):
    master.manage_backlog(clock())
    master.counter_line(master.counter, protocol.beat())
    clock.advance(backlog.SILENCE_LIMIT + 0.1)
    logged()
    master.manage_backlog(clock())
    assert system.killed == [(7000, signal.SIGKILL)]
    assert logged() == [f"ERROR backlog counter (pid 7000) silent for {backlog.SILENCE_LIMIT + 0.1:.0f} s: killing it"]
    system.exits.append((7000, signal.SIGKILL))
    master.reap()
    master.manage_backlog(clock())
    assert forks == [7000], "not at once"
    clock.advance(1)
    master.manage_backlog(clock())
    assert forks == [7000, 7001]


def test_a_counter_that_dies_is_forked_again_with_backoff(master, forks, system, clock, logged):
    master.manage_backlog(clock())
    system.exits.append((7000, exited(1)))
    logged()
    master.reap()
    assert master.counter is None
    assert logged() == ["ERROR backlog counter died (exit code 1): restarting it in 0.5 s"]
    master.manage_backlog(clock())
    assert forks == [7000]
    clock.advance(0.5)
    master.manage_backlog(clock())
    assert forks == [7000, 7001]


def test_a_stop_kills_the_counter_and_forks_no_other(master, forks, system, clock):
    master.manage_backlog(clock())
    master.begin_stop("graceful")
    assert (7000, signal.SIGKILL) in system.killed
    system.exits.append((7000, signal.SIGKILL))
    master.reap()
    master.manage_backlog(clock() + 100)
    assert forks == [7000]


def test_a_pool_at_zero_grows_on_one_waiting_task(tmp_path, system, clock, spawned):
    master = make_master(write(tmp_path, "0..3"), system)
    pool = master.pools["work"]
    master.manage_pools(clock())
    assert pool.target == 0 and not pool.active()
    count(master, "work", 1)  # no child to share it: one task is pressure
    clock.advance(10)
    count(master, "work", 1)
    master.manage_pools(clock())
    assert pool.target == 1 and len(pool.active()) == 1


def own_pool(global_conf, **options):
    """A ``call:`` factory of one's own: no kind, so no task list backlog to scale on."""
    from test_contracts import OwnPool

    return OwnPool()


def test_a_pool_of_ones_own_kind_cannot_autoscale(tmp_path):
    path = tmp_path / "caravan.ini"
    path.write_text(
        "[caravand]\nendpoint_url = http://127.0.0.1:4599\npoll_timeout = 1\ngraceful_timeout = 50\n\n"
        "[pool:own]\nuse = call:test_master_autoscale:own_pool\ndomain = D\ntask_list = t\nprocesses = 1..4\n"
    )
    with pytest.raises(config.ConfigError) as error:
        config.load(str(path))
    assert str(error.value) == (
        f"{path}: [pool:own] processes = 1..4: a pool of kind 'pool' has no task list backlog to scale on "
        "(only decider and activity pools autoscale)"
    )
