"""The master's decisions (caravand.master) on a fake clock, without forking.

``Master.spawn`` forks for real, so these tests replace it with a recorder
that makes a Child with a fake pid; signals go to a fake ``System.kill``
and exits come from a fake ``System.waitpid``. Nothing here sleeps or
starts a process.

The master's log lines are an operator contract (grepped, alerted on):
the ``logged`` fixture asserts them here, word for word, as well as end to end.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import pathlib
import selectors
import signal

import pytest
from helpers import FakeClock

from caravand import config, protocol
from caravand.master import Child, Master, Pool, System, describe_status
from caravand.sdnotify import Notifier
from caravand.states import ChildState, KillStage, PoolState

POOL = """
[pool:{name}]
use = egg:caravand#decider
domain = CaravanDemo
task_list = default
modules = caravand.examples.demo
processes = 2
boot_timeout = 20
heartbeat_grace = 10
beat_timeout = 30
kill_grace = 5
backoff_base = 1
backoff_cap = 8
max_restarts = 3
restart_window = 60
fatal_retry = 300
min_uptime = 5
"""


def exited(code: int) -> int:
    """The wait status of a child that exited with ``code``."""
    return code << 8


def write_config(tmp_path, extra: str = "", names=("demo",)) -> config.Config:
    text = "[caravand]\nendpoint_url = http://127.0.0.1:4599\npoll_timeout = 1\ngraceful_timeout = 50\n" + "".join(
        POOL.format(name=n) + extra for n in names
    )
    path = tmp_path / "caravan.ini"
    path.write_text(text)
    return config.load(str(path))


class FakeSystem(System):
    """No fork; kill is recorded; waitpid hands out the exits a test queued."""

    def __init__(self, clock: FakeClock):
        self.monotonic = clock
        self.killed: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []
        self.rss: dict[int, float] = {}
        self.gone: set[int] = set()
        self.states: dict[int, str] = {}

    def fork(self):  # pragma: no cover - a test that gets here is wrong
        raise AssertionError("the unit tests never fork")

    def kill(self, pid, signum):
        if pid in self.gone:
            raise ProcessLookupError(pid)
        self.killed.append((pid, signum))

    def waitpid(self, pid, options):
        assert options == os.WNOHANG  # the loop never blocks
        if self.exits:
            return self.exits.pop(0)
        return 0, 0

    def rss_mb(self, pid):
        return self.rss.get(pid)

    def process_state(self, pid):
        return self.states.get(pid, "S")


class FakeNotifier:
    enabled = True
    watchdog_interval = None

    def __init__(self):
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *fields):
        self.sent.append(fields)
        return True

    def fileno(self):
        return None


@pytest.fixture
def clock():
    return FakeClock(5000.0)


@pytest.fixture
def system(clock):
    return FakeSystem(clock)


@pytest.fixture
def spawned(monkeypatch):
    """Replace Master.spawn with a recorder: a Child with a fake pid, no fork, no pipe."""
    made: list[Child] = []
    pids = itertools.count(1001)

    def fake_spawn(self, pool):
        now = self.now()
        child = Child(next(pids), pool, pool.free_index(), -1, now, now, max_tasks=pool.spec.max_tasks)
        pool.add(child)
        made.append(child)
        return child

    monkeypatch.setattr(Master, "spawn", fake_spawn)
    monkeypatch.setattr(Master, "start_registration", fake_registration_done)
    monkeypatch.setattr(Master, "start_reload_check", fake_reload_check_passed)
    return made


def fake_reload_check_passed(self, new):
    """An import check whose modules imported (see test_master_hardening for the real sequence)."""
    self.apply_reload(new)


def fake_registration_done(self, pool):
    """A registrar that succeeded at once (see the registration tests for the real sequence)."""
    pool.registration, pool.may_serve = "done", True


@pytest.fixture
def logged(caplog):
    """The master's log lines since the last call, as an operator greps them: ``LEVEL verb: name (detail)``."""
    caplog.set_level(logging.INFO, logger="caravand.master")
    seen = 0

    def lines() -> list[str]:
        nonlocal seen
        records = [r for r in caplog.records if r.name == "caravand.master"]
        new, seen = records[seen:], len(records)
        return [f"{r.levelname} {r.getMessage()}" for r in new]

    return lines


def make_master(cfg, system, notifier=None) -> Master:
    master = Master(cfg, system=system, notifier=notifier or Notifier(environ={}), rng=lambda: 0.5)
    for spec in cfg.pools.values():  # what start() does, without signals or a selector
        master.pools[spec.name] = master.make_pool(spec)
    return master


def boot_all(master: Master) -> None:
    for child in list(master.children.values()):
        if child.booted_at is None:
            master.child_said(child, protocol.booted(), master.now())


def signals_to(system: FakeSystem, child: Child) -> list[int]:
    return [signum for pid, signum in system.killed if pid == child.pid]


# -- Child.overdue and Pool


@pytest.fixture
def pool(tmp_path, clock):
    return Pool(write_config(tmp_path).pools["demo"], clock)


def new_child(pool: Pool, clock: FakeClock, index: int = 1) -> Child:
    child = Child(100 + index, pool, index, -1, clock(), clock())
    pool.add(child)
    return child


def test_booting_child_is_overdue_past_boot_timeout(pool, clock):
    child = new_child(pool, clock)
    for _ in range(4):  # it beats while it boots
        clock.advance(5)
        child.last_seen = clock()
        assert child.overdue(clock()) is None
    clock.advance(0.5)  # 20.5 s after its start
    child.last_seen = clock()
    assert child.overdue(clock()) == "did not boot within 20 s"
    child.state, child.booted_at = ChildState.IDLE, clock()
    assert child.overdue(clock()) is None


@pytest.mark.parametrize("state", [ChildState.POLLING, ChildState.WORKING])
def test_child_is_overdue_past_its_deadline_plus_grace(pool, clock, state):
    child = new_child(pool, clock)
    child.state, child.booted_at = state, clock()
    child.deadline = clock() + 60
    # Merely busy: within its deadline, and within the grace, it beats and is fine.
    for _ in range(14):
        clock.advance(5)
        child.last_seen = clock()
        assert child.overdue(clock()) is None, clock() - child.deadline
    assert clock() == child.deadline + 10  # exactly at the grace: still fine
    clock.advance(0.5)
    child.last_seen = clock()
    assert child.overdue(clock()) == f"{state.value} 10.5 s past its deadline"


def test_silent_child_is_overdue_past_beat_timeout(pool, clock):
    child = new_child(pool, clock)
    child.state, child.booted_at, child.deadline = ChildState.WORKING, clock(), clock() + 3600
    clock.advance(30)
    assert child.overdue(clock()) is None
    clock.advance(0.1)
    assert child.overdue(clock()) == "silent for 30.1 s (working)"


def test_idle_child_without_deadline_is_only_watched_for_beats(pool, clock):
    child = new_child(pool, clock)
    child.state, child.booted_at = ChildState.IDLE, clock()
    clock.advance(1000)
    child.last_seen = clock()
    assert child.overdue(clock()) is None


def test_pool_free_index_active_and_booted(pool, clock):
    assert pool.target == 2 and pool.health.state is PoolState.STARTING
    assert pool.free_index() == 1
    one, two, three = (new_child(pool, clock, i) for i in (1, 2, 3))
    assert pool.free_index() == 4
    pool.remove(two)
    assert pool.free_index() == 2  # the lowest free index is reused
    with pytest.raises(RuntimeError, match="demo#1: index taken by pid 101"):
        pool.add(Child(999, pool, 1, -1, clock(), clock()))
    with pytest.raises(TypeError):
        pool.children[2] = two  # only add() and remove() change a pool's children
    assert pool.active() == [one, three]
    assert pool.booted() == []
    one.booted_at = three.booted_at = clock()
    assert pool.booted() == [one, three]
    three.retiring = True
    one.recycling = True
    assert pool.active() == [] and pool.booted() == []
    assert one.label == "demo#1"


# -- what children say


@pytest.fixture
def master(tmp_path, system):
    return make_master(write_config(tmp_path, "max_tasks = 3\n"), system)


def test_child_said_booted_polling_working_idle(master, spawned, clock, logged):
    master.manage_pools(clock())
    child = spawned[0]
    assert child.state is ChildState.BOOTING and child.booted_at is None
    clock.advance(2)
    master.child_said(child, b"BOOTED", clock())
    assert (child.state, child.deadline, child.booted_at) == (ChildState.IDLE, None, clock())
    assert logged() == ["INFO booted: demo#1 (pid 1001) in 2.00 s"]
    master.child_said(child, b"POLLING 5123.250", clock())
    assert (child.state, child.deadline) == (ChildState.POLLING, 5123.25)
    master.child_said(child, b"WORKING -", clock())
    assert (child.state, child.deadline) == (ChildState.WORKING, None)
    master.child_said(child, b"WORKING 6000", clock())
    assert (child.state, child.deadline) == (ChildState.WORKING, 6000.0)
    master.child_said(child, b"IDLE", clock())
    assert (child.state, child.deadline) == (ChildState.IDLE, None)
    master.child_said(child, b"POLLING", clock())
    assert (child.state, child.deadline) == (ChildState.POLLING, None)
    master.child_said(child, b"PAGING 5200.5", clock())
    assert (child.state, child.deadline) == (ChildState.PAGING, 5200.5)
    before = (child.state, child.deadline, child.tasks)
    master.child_said(child, b"BEAT", clock())
    master.child_said(child, b"", clock())
    assert (child.state, child.deadline, child.tasks) == before
    assert logged() == []  # what a child does is no news; only a change of its life is


def test_a_garbled_line_is_logged_and_never_stops_the_master(master, spawned, clock, logged):
    master.manage_pools(clock())
    child = spawned[0]
    master.child_said(child, b"BOOTED", clock())
    logged()
    master.child_said(child, b"WORKING soon", clock())
    assert (child.state, child.deadline) == (ChildState.WORKING, None)  # busy, with no deadline it can read
    master.child_said(child, b"HELLO  there", clock())
    assert (child.state, child.deadline, child.tasks) == (ChildState.WORKING, None, 0)
    assert logged() == [
        "WARNING garbled: demo#1 (pid 1001) said 'WORKING soon'",
        "WARNING garbled: demo#1 (pid 1001) said 'HELLO there'",
    ]


def test_done_counts_tasks_and_recycles_at_max_tasks(master, spawned, clock, logged):
    master.manage_pools(clock())
    child = spawned[0]
    assert child.max_tasks == 3  # max_tasks_jitter = 0
    for outcome in ("completed", "failed"):
        master.child_said(child, protocol.done(outcome), clock())
        assert not child.recycling
    assert logged() == []
    master.child_said(child, protocol.done("completed"), clock())
    assert child.tasks == 3 and child.recycling
    assert logged() == ["INFO recycling: demo#1 (pid 1001) after 3 tasks"]
    master.child_said(child, protocol.done("completed"), clock())
    assert child.tasks == 4 and child.recycling
    assert logged() == []  # said once


def test_max_tasks_zero_never_recycles(tmp_path, system, spawned, clock):
    master = make_master(write_config(tmp_path), system)
    master.manage_pools(clock())
    child = spawned[0]
    for _ in range(100):
        master.child_said(child, protocol.done("completed"), clock())
    assert child.tasks == 100 and not child.recycling


def test_read_child_splits_lines_across_reads(master, spawned, clock):
    master.manage_pools(clock())
    child = spawned[0]
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    master.selector = selectors.DefaultSelector()
    try:
        child.fd = read_end
        master.selector.register(read_end, selectors.EVENT_READ, child)
        clock.advance(7)
        os.write(write_end, b"BOOTED\nPOLL")
        master.read_child(child)
        assert child.booted_at == clock() and child.last_seen == clock()
        assert child.state is ChildState.IDLE and child.buffer == b"POLL"
        os.write(write_end, b"ING 5100.5\n")
        master.read_child(child)
        assert (child.state, child.deadline, child.buffer) == (ChildState.POLLING, 5100.5, b"")
        master.read_child(child)  # nothing to read: no harm
        os.close(write_end)
        write_end = -1
        master.read_child(child)  # EOF: the child is dying
        assert child.fd == -1
        assert master.selector.get_map() is None or read_end not in master.selector.get_map()
    finally:
        if write_end >= 0:
            os.close(write_end)
        if child.fd >= 0:
            os.close(child.fd)
        master.selector.close()


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (exited(0), "exit code 0"),
        (exited(1), "exit code 1"),
        (exited(3), "exit code 3"),
        (signal.SIGKILL, "killed by SIGKILL"),
        (signal.SIGTERM, "killed by SIGTERM"),
        (signal.SIGABRT | 0x80, "killed by SIGABRT"),  # with a core dump
        (40, "killed by signal 40"),  # a real-time signal without a name
    ],
)
def test_describe_status(status, text):
    assert describe_status(status) == text


# -- manage_pools: spawning, restarts, scaling, recycling


def test_a_new_pool_spawns_its_target(master, spawned, clock):
    master.manage_pools(clock())
    assert [c.index for c in spawned] == [1, 2]
    assert set(master.children) == {c.pid for c in spawned}
    master.manage_pools(clock())  # nothing missing: nothing more
    assert len(spawned) == 2


def test_pool_runs_once_all_booted_for_min_uptime(master, spawned, clock, logged):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    master.child_said(spawned[0], protocol.booted(), clock())
    clock.advance(10)
    master.manage_pools(clock())
    assert pool.health.state is PoolState.STARTING  # one of two booted
    master.child_said(spawned[1], protocol.booted(), clock())
    clock.advance(4.9)
    master.manage_pools(clock())
    assert pool.health.state is PoolState.STARTING
    logged()
    clock.advance(0.1)
    master.manage_pools(clock())
    assert pool.health.state is PoolState.RUNNING
    assert logged() == ["INFO pool: demo STARTING -> RUNNING"]


def test_a_crash_backs_off_then_respawns(master, spawned, system, clock, logged):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    clock.advance(1)  # younger than min_uptime: a failed start
    first = spawned[0]
    system.exits.append((first.pid, exited(1)))
    logged()
    master.reap()
    assert logged() == [
        "ERROR crashed: demo#1 (pid 1001, exit code 1) after 1.0 s",
        "WARNING backoff: demo (restart in 0.5 s)",
    ]
    assert first.pid not in master.children and 1 not in pool.children
    assert pool.health.state is PoolState.BACKOFF
    assert pool.health.retry_at == clock() + 0.5  # rng 0.5 x backoff_base 1
    assert master.next_timeout() == 0, "a child exited: the pools are managed at once"
    master.manage_pools(clock())
    master.watch_children(clock())  # as each pass does: no child's deadline is near
    assert len(spawned) == 2  # not yet
    assert master.next_timeout() == pytest.approx(0.5) and master.next_manage == clock() + 0.5
    clock.advance(0.4)
    master.manage_pools(clock())
    assert len(spawned) == 2
    assert logged() == []
    clock.advance(0.1)
    master.manage_pools(clock())
    assert len(spawned) == 3 and spawned[2].index == 1
    assert pool.health.state is PoolState.STARTING
    assert pool.health.restarts == 1
    assert logged() == ["INFO pool: demo BACKOFF -> STARTING"]


def test_booted_children_killed_from_outside_soon_after_are_replaced_at_once_not_backed_off(
    master, spawned, system, clock, logged
):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    for round in range(8):  # more than max_restarts (3) within restart_window: kills, not failed starts
        clock.advance(1)  # far younger than min_uptime (5 s)
        victim = next(c for c in pool.active() if c.booted_at is not None)
        system.exits.append((victim.pid, signal.SIGKILL if round % 2 else signal.SIGTERM))
        master.reap()
        master.manage_pools(clock())
        boot_all(master)
        assert len(pool.active()) == 2, "replaced at once"
    assert pool.health.state is not PoolState.BACKOFF and pool.health.state is not PoolState.FATAL
    assert "crashed: demo#1 (pid 1001, killed by SIGTERM) after 1.0 s; replacing it at once" in " ".join(logged())
    # Not booted yet, or a fault of its own (SIGSEGV): still a failed start.
    unbooted = next(c for c in pool.active())
    unbooted.booted_at = None
    system.exits.append((unbooted.pid, signal.SIGKILL))
    master.reap()
    assert pool.health.state is PoolState.BACKOFF


def test_a_booted_child_that_faults_soon_is_a_failed_start(master, spawned, system, clock):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    clock.advance(1)
    system.exits.append((spawned[0].pid, signal.SIGSEGV))
    master.reap()
    assert pool.health.state is PoolState.BACKOFF


def test_first_crash_of_a_settled_child_is_replaced_at_once(master, spawned, system, clock, logged):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    clock.advance(100)
    master.manage_pools(clock())
    assert pool.health.state is PoolState.RUNNING
    system.exits.append((spawned[1].pid, signal.SIGKILL))
    logged()
    master.reap()
    assert logged() == ["ERROR crashed: demo#2 (pid 1002, killed by SIGKILL) after 100.0 s; replacing it at once"]
    assert pool.health.state is PoolState.RUNNING  # a child that served is not a failed start: no backoff
    master.manage_pools(clock())
    assert len(spawned) == 3 and spawned[2].index == 2


def test_correlated_crashes_of_settled_children_are_all_replaced_at_once(tmp_path, system, clock, spawned):
    """Eight children up an hour, dying together, never put the pool in BACKOFF or FATAL (max_restarts 3)."""
    cfg = write_config(tmp_path, extra="")
    cfg.pools["demo"] = dataclasses.replace(cfg.pools["demo"], processes=8)
    master = make_master(cfg, system)
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    clock.advance(3600)
    master.manage_pools(clock())
    assert pool.health.state is PoolState.RUNNING
    first = list(spawned)
    system.exits.extend((child.pid, signal.SIGKILL) for child in first)
    master.reap()
    master.manage_pools(clock())
    assert pool.health.state is PoolState.RUNNING
    assert len(spawned) == 16  # every one replaced in the same pass
    assert {c.index for c in spawned[8:]} == set(range(1, 9))


def test_a_boot_failure_is_never_replaced_at_once(master, spawned, system, clock):
    """EXIT_BOOT_FAILED counts as uptime 0, however long the attempt took."""
    pool = master.pools["demo"]
    master.manage_pools(clock())
    for _ in range(3):
        clock.advance(60)  # a slow failing boot, each one outside the last window
        child = next(c for c in master.children.values())
        system.exits.append((child.pid, exited(3)))
        master.reap()
        assert pool.health.state is PoolState.BACKOFF
        assert pool.health.retry_at > clock()
        count = len(spawned)
        master.manage_pools(clock())
        assert len(spawned) == count  # no hot loop
        clock.advance(pool.health.retry_at - clock())
        master.manage_pools(clock())
        assert len(spawned) == count + 1


def test_crash_loop_goes_fatal_and_other_pools_live_on(tmp_path, system, spawned, clock, logged):
    master = make_master(write_config(tmp_path, names=("bad", "good")), system)
    bad, good = master.pools["bad"], master.pools["good"]
    master.manage_pools(clock())
    assert len(spawned) == 4
    for c in list(good.children.values()):
        master.child_said(c, protocol.booted(), clock())
    for _ in range(8):
        for c in list(bad.children.values()):
            system.exits.append((c.pid, exited(3)))
        master.reap()
        if bad.health.state is PoolState.FATAL:
            break
        clock.advance(bad.health.retry_at - clock())
        master.manage_pools(clock())
    assert bad.health.state is PoolState.FATAL
    assert bad.health.restarts == 3  # bounded by max_restarts
    assert logged() == [
        "INFO booted: good#1 (pid 1003) in 0.00 s",
        "INFO booted: good#2 (pid 1004) in 0.00 s",
        "ERROR crashed: bad#1 (pid 1001, exit code 3) after 0.0 s",
        "WARNING backoff: bad (restart in 0.5 s)",
        "ERROR crashed: bad#2 (pid 1002, exit code 3) after 0.0 s",
        "WARNING backoff: bad (restart in 1.0 s)",
        "INFO pool: bad BACKOFF -> STARTING",
        "ERROR crashed: bad#1 (pid 1005, exit code 3) after 0.0 s",
        "WARNING backoff: bad (restart in 2.0 s)",
        "ERROR crashed: bad#2 (pid 1006, exit code 3) after 0.0 s",
        "ERROR gave up: bad (4 failed starts in 60 s); retrying in 300 s",
    ]
    count = len(spawned)
    clock.advance(299)
    master.manage_pools(clock())
    assert len(spawned) == count and not bad.children
    assert good.health.state is PoolState.RUNNING
    assert len(good.booted()) == 2
    clock.advance(1)  # fatal_retry = 300
    master.manage_pools(clock())
    assert bad.health.state is PoolState.STARTING
    assert len(spawned) == count + 2
    assert "INFO pool: bad FATAL -> STARTING" in logged()


def test_a_crash_in_a_pool_already_fatal_is_harmless(master, spawned, system, clock):
    """The pool gave up while another of its children still ran; that one dies too."""
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    survivor = spawned[1]
    while pool.health.state is not PoolState.FATAL:
        system.exits.append((pool.children[1].pid, exited(3)))
        master.reap()
        clock.advance(max(0.0, pool.health.retry_at - clock()))
        master.manage_pools(clock())
    count = len(spawned)
    system.exits.append((survivor.pid, exited(1)))
    master.reap()  # no RuntimeError: FATAL -> FATAL is no edge
    assert pool.health.state is PoolState.FATAL and not pool.children
    master.manage_pools(clock())
    assert len(spawned) == count


def test_expected_exits_do_not_count_as_crashes(master, spawned, system, clock, logged):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    logged()
    master.retire(spawned[0], "test")
    assert signals_to(system, spawned[0]) == [signal.SIGTERM]
    system.exits.append((spawned[0].pid, signal.SIGKILL))
    master.reap()
    assert pool.health.state is PoolState.STARTING and not pool.health.crashes
    assert logged() == ["INFO retiring: demo#1 (pid 1001, test)", "INFO exited: demo#1 (pid 1001, killed by SIGKILL)"]


def test_scale_down_retires_the_highest_index(master, spawned, system, clock, logged):
    pool = master.pools["demo"]
    master.handle_ttin()
    master.manage_pools(clock())
    assert [c.index for c in spawned] == [1, 2, 3]
    boot_all(master)
    logged()
    master.handle_ttou()
    master.handle_ttou()
    assert pool.target == 1
    master.manage_pools(clock())
    assert logged() == [
        "INFO scale: demo down from 3 to 2 (TTOU)",
        "INFO scale: demo down from 2 to 1 (TTOU)",
        "INFO retiring: demo#2 (pid 1002, scaled down)",
        "INFO retiring: demo#3 (pid 1003, scaled down)",
    ]
    assert sorted(system.killed) == [(spawned[1].pid, signal.SIGTERM), (spawned[2].pid, signal.SIGTERM)]
    assert spawned[1].retiring and spawned[2].retiring and not spawned[0].retiring
    assert spawned[2].stop_deadline == clock() + 50  # graceful_timeout
    master.manage_pools(clock())  # asked once only
    assert len(system.killed) == 2 and len(spawned) == 3
    for child in spawned[1:]:
        system.exits.append((child.pid, exited(0)))
    master.reap()
    assert list(pool.children) == [1]
    assert pool.health.state is PoolState.STARTING and not pool.health.crashes
    master.manage_pools(clock())
    assert len(spawned) == 3
    master.handle_ttou()
    master.handle_ttou()
    assert pool.target == 0  # never below zero


def test_recycling_starts_the_replacement_first(master, spawned, system, clock, logged):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    old = spawned[0]
    for _ in range(3):
        master.child_said(old, protocol.done("completed"), clock())
    assert old.recycling
    master.manage_pools(clock())
    assert len(spawned) == 3
    new = spawned[2]
    assert new.index == 3
    assert system.killed == []  # the old one serves until the new one booted
    master.manage_pools(clock())
    assert system.killed == [] and len(spawned) == 3
    logged()
    master.child_said(new, protocol.booted(), clock())
    master.manage_pools(clock())
    assert system.killed == [(old.pid, signal.SIGTERM)]
    assert old.retiring
    assert logged() == ["INFO booted: demo#3 (pid 1003) in 0.00 s", "INFO retiring: demo#1 (pid 1001, replaced)"]
    system.exits.append((old.pid, exited(0)))
    master.reap()
    assert sorted(pool.children) == [2, 3]
    assert not pool.health.crashes


def test_recycling_by_resident_memory(tmp_path, system, spawned, clock, logged):
    master = make_master(write_config(tmp_path, "max_rss_mb = 100\n"), system)
    master.manage_pools(clock())
    boot_all(master)
    first, second = spawned
    system.rss = {first.pid: 150.0, second.pid: 99.0}
    logged()
    master.watch_children(clock())
    assert first.recycling and not second.recycling
    assert logged() == ["INFO recycling: demo#1 (pid 1001) at 150 MB > max_rss_mb 100"]
    system.rss[second.pid] = 500.0
    clock.advance(9)
    master.watch_children(clock())
    assert not second.recycling  # read every RSS_INTERVAL (10 s)
    clock.advance(1)
    master.watch_children(clock())
    assert second.recycling


def test_hung_child_gets_sigabrt_then_sigkill(master, spawned, system, clock, logged):
    master.manage_pools(clock())
    boot_all(master)
    child = spawned[0]
    master.child_said(child, protocol.busy(ChildState.WORKING, clock() + 20), clock())
    for other in spawned:
        other.last_seen = clock() + 29
    clock.advance(30)  # 10 s past the deadline: within the grace
    master.watch_children(clock())
    assert system.killed == []
    logged()
    clock.advance(0.5)
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGABRT)]
    assert child.kill_stage is KillStage.ABORTED and child.kill_at == clock() + 5
    assert logged() == [
        "ERROR hung: demo#1 (pid 1001) working 10.5 s past its deadline: SIGABRT (its stack is logged when it exits)"
    ]
    clock.advance(4.9)
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGABRT)]
    clock.advance(0.1)
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGABRT), (child.pid, signal.SIGKILL)]
    assert child.kill_stage is KillStage.KILLED
    master.watch_children(clock())
    assert len(system.killed) == 2
    assert logged() == ["ERROR killing: demo#1 (pid 1001) with SIGKILL: SIGABRT did not end it"]
    # Killed for overstaying is a crash; this child had served (min_uptime), so it is replaced at once.
    system.exits.append((child.pid, signal.SIGKILL))
    master.reap()
    assert logged() == ["ERROR crashed: demo#1 (pid 1001, killed by SIGKILL) after 35.5 s; replacing it at once"]
    assert master.pools["demo"].health.restarts == 1
    assert master.pools["demo"].health.may_spawn()


def test_retired_child_is_killed_after_graceful_timeout(master, spawned, system, clock, logged):
    master.manage_pools(clock())
    boot_all(master)
    child = spawned[1]
    logged()
    master.retire(child, "test")
    assert logged() == ["INFO retiring: demo#2 (pid 1002, test)"]
    for c in spawned:  # it beats while it finishes its task
        c.last_seen = clock() + 49
    clock.advance(39.9)
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGTERM)]
    assert child.kill_stage is KillStage.NONE
    clock.advance(0.1)  # ALARM_MARGIN (10 s) before the deadline: fail the task in hand now
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGTERM), (child.pid, signal.SIGALRM)]
    assert child.kill_stage is KillStage.ALARMED
    assert logged() == ["WARNING deadline: demo#2 (pid 1002): SIGALRM, a task in hand is failed"]
    clock.advance(9.9)  # room for one throttled or reconnecting RespondActivityTaskFailed
    master.watch_children(clock())
    assert system.killed[-1] == (child.pid, signal.SIGALRM)  # once, and no SIGKILL yet
    clock.advance(0.1)
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGTERM), (child.pid, signal.SIGALRM), (child.pid, signal.SIGKILL)]
    assert child.kill_stage is KillStage.KILLED
    assert logged() == ["ERROR killing: demo#2 (pid 1002): still running at its stop deadline"]
    clock.advance(100)
    master.watch_children(clock())
    assert signals_to(system, child) == [signal.SIGTERM, signal.SIGALRM, signal.SIGKILL]  # only its exit is ahead


def test_an_alarmed_child_that_hangs_is_aborted_and_the_kill_stage_never_goes_back(master, spawned, system, clock):
    master.manage_pools(clock())
    boot_all(master)
    child = spawned[0]
    master.retire(child, "scaled down")
    clock.advance(40)  # its stop deadline is ALARM_MARGIN away
    spawned[1].last_seen = child.last_seen = clock()
    master.watch_children(clock())
    assert child.kill_stage is KillStage.ALARMED
    clock.advance(5)
    master.begin_stop("graceful")  # a new stop deadline, 50 s from now: no second SIGALRM
    clock.advance(25.5)  # silent past beat_timeout
    spawned[1].last_seen = clock()
    master.watch_children(clock())
    assert signals_to(system, child) == [signal.SIGTERM, signal.SIGALRM, signal.SIGTERM, signal.SIGABRT]
    assert child.kill_stage is KillStage.ABORTED
    with pytest.raises(RuntimeError, match="demo#1: no kill stage edge from ABORTED to ALARMED"):
        child.escalate(KillStage.ALARMED)


def test_signal_to_a_vanished_child_is_ignored(master, spawned, system, clock):
    master.manage_pools(clock())
    system.gone.add(spawned[0].pid)
    master.signal_child(spawned[0], signal.SIGTERM)
    assert system.killed == []


def test_graceful_stop_spawns_nothing_and_counts_no_crash(master, spawned, system, clock, logged):
    pool = master.pools["demo"]
    master.manage_pools(clock())
    boot_all(master)
    logged()
    master.handle_term()
    assert master.stopping == "graceful"
    assert logged() == ["INFO stopping: master (graceful, 2 children, up to 50 s)"]
    assert sorted(system.killed) == sorted((c.pid, signal.SIGTERM) for c in spawned)
    assert pool.health.state is PoolState.STOPPING
    system.exits.append((spawned[0].pid, exited(1)))
    master.reap()
    master.manage_pools(clock())
    master.check_stop(clock())
    assert len(spawned) == 2 and not master.done
    assert logged() == ["INFO exited: demo#1 (pid 1001, exit code 1)"]  # no crash: it was asked to go
    clock.advance(50)  # graceful_timeout
    for child in master.children.values():  # it beat until the end
        child.last_seen = clock()
    master.watch_children(clock())
    master.check_stop(clock())
    assert system.killed[-1] == (spawned[1].pid, signal.SIGKILL)
    assert not master.done
    system.exits.append((spawned[1].pid, signal.SIGKILL))
    master.reap()
    master.check_stop(clock())
    assert master.done and master.exit_code == 0
    assert not pool.health.crashes
    assert logged() == [
        "ERROR killing: demo#2 (pid 1002): still running at its stop deadline",
        "INFO exited: demo#2 (pid 1002, killed by SIGKILL)",
    ]


def test_a_second_interrupt_stops_fast_and_run_says_stopped(master, spawned, system, monkeypatch, logged):
    """INT, INT: the second turns the graceful stop fast (SIGQUIT); run() ends with one line and the exit code."""

    def start(self):  # what start() does, without signal handlers or a stack directory; then INT, INT
        self.selector = selectors.DefaultSelector()
        self.wakeup = os.pipe2(os.O_NONBLOCK)
        self.selector.register(self.wakeup[0], selectors.EVENT_READ, None)
        self.signal_queue += [signal.SIGINT, signal.SIGINT]  # as the handler does, with the wakeup fd
        os.write(self.wakeup[1], b"\0")

    def cleanup(self):
        self.selector.close()
        for fd in self.wakeup:
            os.close(fd)

    def kill(pid, signum, kill=system.kill):  # a child ends at once on QUIT: nothing in hand
        kill(pid, signum)
        if signum == signal.SIGQUIT:
            system.exits.append((pid, signum))

    monkeypatch.setattr(Master, "start", start)
    monkeypatch.setattr(Master, "cleanup", cleanup)
    monkeypatch.setattr(system, "kill", kill)
    assert master.run() == 0
    assert signals_to(system, spawned[0]) == [signal.SIGTERM, signal.SIGQUIT]
    assert logged() == [
        "INFO stopping: master (graceful, 2 children, up to 50 s)",
        "INFO stopping: master (fast now)",
        "INFO exited: demo#1 (pid 1001, killed by SIGQUIT)",
        "INFO exited: demo#2 (pid 1002, killed by SIGQUIT)",
        f"INFO stopped: master (pid {os.getpid()}, exit 0)",
    ]


def test_ready_only_once_every_pool_has_its_children_booted(tmp_path, system, spawned, clock):
    notifier = FakeNotifier()
    master = make_master(write_config(tmp_path), system, notifier)
    master.manage_pools(clock())
    master.tell_systemd(clock())
    assert notifier.sent == [("STATUS=demo 0/2 starting",)]
    master.child_said(spawned[0], protocol.booted(), clock())
    master.tell_systemd(clock())
    assert notifier.sent[-1] == ("STATUS=demo 1/2 starting",)
    master.child_said(spawned[1], protocol.booted(), clock())
    master.tell_systemd(clock())
    assert notifier.sent[-1] == ("READY=1", "STATUS=demo 2/2 starting")
    count = len(notifier.sent)
    master.tell_systemd(clock())
    assert len(notifier.sent) == count  # nothing changed: nothing sent
    assert not any("READY=1" in fields for fields in notifier.sent[:-1])


def test_child_next_check_is_the_earliest_deadline_and_never_a_past_one_while_aborting():
    """The loop wakes when a child may become overdue, and does not spin while SIGKILL waits."""
    from types import SimpleNamespace

    from caravand.master import Child

    spec = SimpleNamespace(beat_timeout=30.0, boot_timeout=120.0, heartbeat_grace=10.0)
    pool = SimpleNamespace(spec=spec, name="p")
    child = Child(pid=1, pool=pool, index=1, fd=-1, started_at=100.0, last_seen=100.0)
    assert child.next_check() == 130.0  # booting: the beat timeout comes first
    child.state, child.deadline = ChildState.WORKING, 105.0
    assert child.next_check() == 115.0  # its deadline plus the grace
    child.kill_stage, child.kill_at = KillStage.ABORTED, 120.0
    assert child.next_check() == 120.0  # past deadlines no longer count: no busy loop


def test_spawn_blocks_the_childs_signals_across_fork_and_restores_the_mask(master, system, monkeypatch, logged):
    """A signal sent between fork() and the child's own handlers waits for them instead of being lost."""
    from caravand import child as child_module

    master.selector = selectors.DefaultSelector()
    seen = {}

    def fork():
        seen["blocked"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        return 424242  # the parent's side only: no process is made

    monkeypatch.setattr(system, "fork", fork, raising=False)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        child = master.spawn(master.pools["demo"])
        assert child is not None and child.pid == 424242
        assert logged() == ["INFO spawned: demo#1 (pid 424242)"]
        assert master.children == {424242: child} and master.pools["demo"].children == {1: child}
        assert child_module.HANDLED_SIGNALS <= seen["blocked"]
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    finally:
        master.unregister(child)
        master.selector.close()


def test_a_failed_fork_backs_the_pool_off_instead_of_stopping_the_master(master, system, monkeypatch, logged):
    master.selector = selectors.DefaultSelector()

    def fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(system, "fork", fork, raising=False)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        assert master.spawn(master.pools["demo"]) is None
        assert master.pools["demo"].health.state is PoolState.BACKOFF
        assert logged() == ["ERROR fork failed: demo ([Errno 11] Resource temporarily unavailable)"]
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
        assert master.children == {}
    finally:
        master.selector.close()


def test_a_second_reload_before_the_replacement_booted_keeps_the_serving_generation(tmp_path, system, spawned, clock):
    """HUP, HUP: generation 1 serves until generation 3 is up; generation 2, never up, goes at once."""
    cfg = write_config(tmp_path)
    master = make_master(cfg, system)
    master.manage_pools(clock())
    boot_all(master)
    first = list(spawned)
    path = pathlib.Path(cfg.path)
    path.write_text(
        path.read_text().replace("modules = caravand.examples.demo", "modules = caravand.examples.greeting")
    )
    master.reload()  # generation 2 spawns; generation 1 waits for it to boot
    master.manage_pools(clock())
    second = [c for c in spawned if c not in first]
    assert len(second) == 2 and all(not c.retiring for c in first)
    path.write_text(path.read_text().replace("caravand.examples.greeting", "caravand.examples.demo"))
    master.reload()  # before generation 2 booted
    assert all(c.retiring for c in second)  # never up: superseded
    assert not any(c.retiring for c in first)  # still the only one serving
    master.manage_pools(clock())
    third = [c for c in spawned if c not in first and c not in second]
    assert len(third) == 2
    boot_all(master)
    master.manage_pools(clock())
    assert all(c.retiring for c in first)  # generation 3 is up: now generation 1 goes
    assert not any(c.retiring for c in third)


def test_a_reload_says_what_it_changes_and_a_refused_one_why(tmp_path, system, spawned, clock, logged):
    cfg = write_config(tmp_path, names=("demo", "other", "gone"))
    master = make_master(cfg, system)
    master.manage_pools(clock())
    boot_all(master)
    write_config(tmp_path, names=("demo", "other", "fresh"))  # the same file: gone removed, fresh added
    path = pathlib.Path(cfg.path)
    text = path.read_text()
    demo, other = text.index("[pool:demo]"), text.index("[pool:other]")
    demo_text = text[demo:other].replace("caravand.examples.demo", "caravand.examples.greeting")
    path.write_text(text[:demo] + demo_text + text[other:].replace("processes = 2", "processes = 3", 1))
    logged()
    master.reload()
    assert logged() == [
        f"INFO reloading: {path} (HUP)",
        "INFO replacing: demo (new settings; new children first)",
        "INFO resized: other to 3",
        "INFO added: fresh",
        "INFO retiring: gone#1 (pid 1005, removed from the ini)",
        "INFO retiring: gone#2 (pid 1006, removed from the ini)",
        f"INFO reloaded: {path} (3 pools)",
    ]
    master.manage_pools(clock())
    boot_all(master)
    master.manage_pools(clock())  # the new demo is up: the old one goes
    system.exits.extend((pid, exited(0)) for pid in (1001, 1002, 1005, 1006))
    master.reap()
    master.manage_pools(clock())
    assert [line for line in logged() if "booted: " not in line] == [
        "INFO retiring: demo#1 (pid 1001, replaced by the new demo)",
        "INFO retiring: demo#2 (pid 1002, replaced by the new demo)",
        "INFO exited: demo#1 (pid 1001, exit code 0)",
        "INFO exited: demo#2 (pid 1002, exit code 0)",
        "INFO exited: gone#1 (pid 1005, exit code 0)",
        "INFO exited: gone#2 (pid 1006, exit code 0)",
        "INFO drained: demo",
        "INFO drained: gone",
    ]
    path.write_text(path.read_text().replace("127.0.0.1:4599", "127.0.0.1:4600"))
    before = master.config
    master.reload()
    assert master.config is before
    assert logged() == [
        f"INFO reloading: {path} (HUP)",
        f"ERROR reload refused: {path}: [caravand] endpoint settings changed: restart caravand to apply"
        " (the running configuration stays)",
    ]


def test_a_pool_removed_before_its_replacement_was_up_drains_both_generations(tmp_path, system, spawned, clock):
    cfg = write_config(tmp_path, names=("demo", "other"))
    master = make_master(cfg, system)
    master.manage_pools(clock())
    boot_all(master)
    first = [c for c in spawned if c.pool.name == "demo"]
    path = pathlib.Path(cfg.path)
    text = path.read_text()
    path.write_text(text.replace("modules = caravand.examples.demo", "modules = caravand.examples.greeting", 1))
    master.reload()
    master.manage_pools(clock())
    second = list(master.pools["demo"].children.values())
    assert len(second) == 2 and not any(c.retiring for c in first)  # the first generation serves meanwhile
    path.write_text(text[: text.index("[pool:demo]")] + text[text.index("[pool:other]") :])  # demo removed
    master.reload()
    assert "demo" not in master.pools
    assert all(c.retiring for c in first + second)
    assert {p.name for p in master.draining} == {"demo"} and len(master.draining) == 2
    system.exits.extend((c.pid, exited(0)) for c in first + second)
    master.reap()
    master.manage_pools(clock())
    assert master.draining == [] and set(master.children) == {c.pid for c in spawned if c.pool.name == "other"}


def test_the_pools_own_their_children_and_the_master_finds_them_by_pid(tmp_path, system, spawned, clock):
    """One index: a replaced pool's children, draining, are still found by pid and reaped; then the pool is forgotten."""
    cfg = write_config(tmp_path)
    master = make_master(cfg, system)
    master.manage_pools(clock())
    boot_all(master)
    first = list(spawned)
    old = master.pools["demo"]
    path = pathlib.Path(cfg.path)
    path.write_text(
        path.read_text().replace("modules = caravand.examples.demo", "modules = caravand.examples.greeting")
    )
    master.reload()
    master.manage_pools(clock())
    boot_all(master)
    master.manage_pools(clock())  # the new generation is up: the old one drains
    assert master.draining == [old] and all(c.retiring for c in first)
    assert set(master.children) == {c.pid for c in spawned} and len(spawned) == 4  # serving and draining
    with pytest.raises(TypeError):
        master.children[1] = first[0]  # derived from the pools: nothing to keep in step
    system.exits.extend((c.pid, exited(0)) for c in first)
    master.reap()
    assert set(master.children) == {c.pid for c in spawned[2:]} and not old.children
    master.manage_pools(clock())
    assert master.draining == []


def test_good_bad_bad_good_reloads_never_leave_zero_workers(tmp_path, system, spawned, clock):
    """Seen: two bad reloads in a row retired the pool that served, and no child of it ran any more."""
    cfg = write_config(tmp_path)
    master = make_master(cfg, system)
    path = pathlib.Path(cfg.path)
    text = path.read_text()
    master.manage_pools(clock())
    boot_all(master)
    serving = list(spawned)

    def serving_children():
        return [c for c in master.children.values() if c.booted_at is not None and not c.retiring]

    for module in ("caravand.examples.greeting", "caravand.examples.lambda_demo"):  # two failing replacements
        path.write_text(text.replace("modules = caravand.examples.demo", f"modules = {module}"))
        master.reload()
        master.manage_pools(clock())
        # The new generation never boots: its children die as failed starts.
        for child in [c for c in master.children.values() if c.booted_at is None]:
            system.exits.append((child.pid, exited(3)))
        master.reap()
        master.manage_pools(clock())
        assert serving_children() == serving, "the generation that serves was retired"
    path.write_text(text)  # good again
    master.reload()
    master.manage_pools(clock())
    boot_all(master)
    master.manage_pools(clock())
    fresh = serving_children()
    assert len(fresh) == 2 and not [c for c in fresh if c in serving]
    assert all(c.retiring for c in serving)


def test_ready_comes_even_when_a_pool_gave_up(tmp_path, system, spawned, clock):
    """A FATAL pool counts as settled: one broken pool must not keep systemd waiting for READY."""
    notifier = FakeNotifier()
    master = make_master(write_config(tmp_path, names=("good", "bad")), system, notifier)
    master.manage_pools(clock())
    for child in [c for c in spawned if c.pool.name == "good"]:
        master.child_said(child, protocol.booted(), clock())
    bad = master.pools["bad"]
    for _ in range(bad.spec.max_restarts + 1):
        bad.health.child_exited(crashed=True, uptime=0.0)
        bad.health.retry_at = 0.0
    assert bad.health.state is PoolState.FATAL
    master.tell_systemd(clock())
    assert any("READY=1" in fields for fields in notifier.sent)


def test_fast_exit_only_inside_the_long_poll_and_only_once(tmp_path):
    """QUIT abandons a poll in flight, never a task just received, and never the way out."""
    from types import SimpleNamespace

    from caravand.child import ChildProcess, FastExit

    spec = SimpleNamespace(kind="decider", name="p", domain="D", task_list="t")
    fd = os.open(os.devnull, os.O_WRONLY)
    child = ChildProcess(spec, 1, None, fd, os.getppid())
    child.poller = SimpleNamespace(abortable=False, stop=lambda: None)
    child.on_quit(signal.SIGQUIT, None)  # a task may be in hand: no exception, a stop
    assert child.stop_requested
    child.poller.abortable = True
    with pytest.raises(FastExit):
        child.on_quit(signal.SIGQUIT, None)
    child.on_quit(signal.SIGQUIT, None)  # a second QUIT during the way out raises nothing
    os.close(fd)


def test_an_orphan_lets_its_poll_end_within_its_own_deadline(monkeypatch):
    """The master died: a poll dropped now could still be handed a task by SWF, which then waits for its timeout.

    So the orphan stops as on TERM (never abandoning the poll in flight) and
    arms its own SIGALRM at the poll's read timeout plus the alarm margin.
    """
    from types import SimpleNamespace

    from caravand import child as child_module
    from caravand.child import ORPHAN_SIGNAL, ChildProcess
    from caravand.config import ALARM_MARGIN
    from caravand.swf import Endpoint

    timers = []
    monkeypatch.setattr(child_module.signal, "setitimer", lambda which, seconds: timers.append((which, seconds)))
    spec = SimpleNamespace(kind="activity", name="p", domain="D", task_list="t")
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        child = ChildProcess(spec, 1, Endpoint(poll_hold=60), fd, os.getppid())
        child.poller = SimpleNamespace(abortable=True, stop=lambda: None)  # inside the long poll
        child.on_orphaned(ORPHAN_SIGNAL, None)  # no FastExit: the poll ends by itself
        assert child.stop_requested
        assert timers == [(signal.ITIMER_REAL, 70 + ALARM_MARGIN)]
        child.on_orphaned(ORPHAN_SIGNAL, None)
        assert len(timers) == 1  # armed once
    finally:
        os.close(fd)


def test_a_stopped_child_gets_sigkill_at_once_not_a_sigabrt_it_cannot_answer(master, spawned, system, clock, caplog):
    """A SIGSTOPped child cannot run faulthandler: no stack would follow, and kill_grace would be wasted."""
    master.manage_pools(clock())
    boot_all(master)
    child = spawned[0]
    system.states[child.pid] = "T"
    clock.advance(31)  # silent past beat_timeout: it is stopped
    spawned[1].last_seen = clock()
    master.watch_children(clock())
    assert system.killed == [(child.pid, signal.SIGKILL)]
    assert "it is stopped (state T) and cannot dump its stack: SIGKILL" in caplog.text
    assert "its stack is logged" not in caplog.text


def test_process_state_reads_proc():
    assert System.process_state(os.getpid()) in ("R", "S")
    assert System.process_state(2**22 + 12345) is None


def test_ttin_stops_at_max_processes(tmp_path, system, spawned, clock, caplog):
    cfg = write_config(tmp_path)
    cfg = dataclasses.replace(cfg, master=dataclasses.replace(cfg.master, max_processes=3))
    master = make_master(cfg, system)
    master.handle_ttin()
    master.handle_ttin()
    assert master.pools["demo"].target == 3
    assert "scale: demo stays at 3 (TTIN): max_processes is 3" in caplog.text
