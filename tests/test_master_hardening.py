"""The master against real SWF's hazards, on a fake clock: a loop that never waits on the network,
registration once per pool in a throwaway process, EMFILE, children that give up, stack dumps.

Each test here failed on the master before issue 7's changes.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import selectors
import signal

import pytest
from test_master_unit import (  # noqa: F401 - fixtures
    FakeNotifier,
    boot_all,
    clock,
    exited,
    make_master,
    spawned,
    system,
    write_config,
)

from caravand import child as child_module
from caravand import swf
from caravand.master import REGISTRATION_TIMEOUT, Master
from caravand.states import PoolState


@pytest.fixture
def master(tmp_path, system):
    return make_master(write_config(tmp_path), system)


# -- 1. the loop never waits on the network, and a late pass reads the pipes first


def test_a_late_pass_reads_the_pipes_before_it_judges_anyone_silent(master, spawned, system, clock, monkeypatch):
    """Seen: a HUP that blocked the loop 60 s, then every child that had beaten got SIGABRT."""
    master.selector = selectors.DefaultSelector()
    master.wakeup = os.pipe2(os.O_NONBLOCK)
    master.selector.register(master.wakeup[0], selectors.EVENT_READ, None)
    master.manage_pools(clock())
    boot_all(master)
    pipes = {}
    for child in spawned:  # give each fake child a real pipe
        read_end, write_end = os.pipe2(os.O_NONBLOCK)
        child.fd, pipes[child.pid] = read_end, write_end
        master.selector.register(read_end, selectors.EVENT_READ, child)

    def slow_signal_handling():
        # The children beat every 5 s while the master is stuck for 64 s.
        clock.advance(64)
        for write_end in pipes.values():
            os.write(write_end, b"BEAT\n")

    monkeypatch.setattr(master, "handle_signals", slow_signal_handling)
    try:
        master.loop_once()
        assert system.killed == []  # nobody was judged silent
        assert all(child.last_seen == clock() for child in spawned)
    finally:
        master.selector.close()
        for fd in [*master.wakeup, *pipes.values(), *(c.fd for c in spawned)]:
            os.close(fd)


def test_reload_makes_no_swf_call_even_with_register_domains(tmp_path, system, spawned, clock, monkeypatch):
    """Registration moved to a forked registrar: the loop must never wait on an unreachable endpoint."""
    master = make_master(write_config(tmp_path), system)
    path = pathlib.Path(master.config.path)
    path.write_text(path.read_text().replace("[caravand]\n", "[caravand]\nregister_domains = true\n"))

    def no_network(*args, **kwargs):
        raise AssertionError("the master loop made an SWF client")

    monkeypatch.setattr(swf, "make_client", no_network)
    monkeypatch.setattr(swf, "make_session", no_network)
    path.write_text(path.read_text().replace("processes = 2", "processes = 3"))
    master.reload()
    master.manage_pools(clock())
    assert master.config.master.register_domains is True
    assert len(spawned) == 3


# -- 9. registration: once per pool, in a registrar, gating only the first children


@pytest.fixture
def registrars(monkeypatch, clock):
    """Replace the registrar's fork: record each start, with a fake pid."""
    started = []

    def fork(self, pool, *fds, failed_start=True):
        assert failed_start is False  # a registrar's refused fork is no failed start of its pool
        started.append(pool.name)
        return 7000 + len(started)

    monkeypatch.setattr(Master, "fork", fork)
    return started


def test_first_children_wait_for_the_first_registration_attempt(master, system, clock, registrars, monkeypatch):
    spawned_pools = []
    monkeypatch.setattr(Master, "spawn", lambda self, pool: spawned_pools.append(pool.name) or None)
    pool = master.pools["demo"]
    master.manage_pools(clock())
    assert registrars == ["demo"] and pool.registration == "running"
    assert spawned_pools == []  # its domain may not exist yet
    master.manage_pools(clock())
    assert registrars == ["demo"]  # one registrar at a time
    system.exits.append((7001, exited(1)))  # it failed: children go on, and find out for themselves
    master.reap()
    assert pool.registration == "failed" and pool.may_serve
    master.manage_pools(clock())
    assert spawned_pools == ["demo", "demo"]
    assert pool.registration_retry_at > clock()
    clock.advance(pool.registration_retry_at - clock())
    master.manage_pools(clock())
    assert registrars == ["demo", "demo"]  # tried again after its backoff
    system.exits.append((7002, exited(0)))
    master.reap()
    assert pool.registration == "done"
    clock.advance(3600)
    master.manage_pools(clock())
    assert registrars == ["demo", "demo"]  # once per pool: never again for recycles or restarts


def test_a_registrar_past_its_timeout_is_killed(master, system, clock, registrars, monkeypatch):
    monkeypatch.setattr(Master, "spawn", lambda self, pool: None)
    master.manage_pools(clock())
    clock.advance(REGISTRATION_TIMEOUT)
    master.watch_children(clock())
    assert system.killed == [(7001, signal.SIGKILL)]
    master.watch_children(clock())
    assert len(system.killed) == 1


def test_a_stop_ends_registrars_and_waits_for_them(master, system, clock, registrars, monkeypatch):
    monkeypatch.setattr(Master, "spawn", lambda self, pool: None)
    master.manage_pools(clock())
    master.begin_stop("graceful")
    assert (7001, signal.SIGTERM) in system.killed
    master.check_stop(clock())
    assert not master.done  # its registrar has not been reaped yet
    system.exits.append((7001, signal.SIGTERM))
    master.reap()
    master.check_stop(clock())
    assert master.done


def test_children_boot_without_registering(tmp_path):
    """The built-in pools hand their children a poller that makes no SWF call to boot."""
    spec = write_config(tmp_path).pools["demo"]
    poller = spec.make_poller(swf.Endpoint(region="us-east-1"), identity="test", hooks=None)
    assert poller.register is False
    assert callable(spec.factory.register_types)


# -- 8. EMFILE


def test_emfile_at_spawn_is_a_failed_start_not_the_masters_end(master, system, clock, monkeypatch):
    master.selector = selectors.DefaultSelector()

    def no_more_files():
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "pipe", no_more_files)
    try:
        assert master.spawn(master.pools["demo"]) is None
    finally:
        master.selector.close()
    assert master.pools["demo"].health.state is PoolState.BACKOFF
    assert master.children == {}


# -- 11. a child that gives up says why; the pool backs off, goes FATAL, and STATUS says why


def test_a_child_that_gives_up_tells_the_log_and_status_why(tmp_path, system, spawned, clock, caplog):
    notifier = FakeNotifier()
    master = make_master(write_config(tmp_path), system, notifier)
    pool = master.pools["demo"]
    reason = "polling Gone/default failed 5 times in a row with an error no retry can fix: UnknownResourceFault"
    with caplog.at_level(logging.ERROR, logger="caravand.master"):
        for _ in range(4):  # max_restarts = 3
            master.manage_pools(clock())
            child = next(c for c in master.children.values())
            master.child_said(child, ["BOOTED"], clock())
            master.child_said(child, ["FAILED", *reason.split()], clock())
            clock.advance(6)  # past min_uptime: yet giving up is a failed start (EXIT_BOOT_FAILED)
            system.exits.append((child.pid, exited(child_module.EXIT_BOOT_FAILED)))
            master.reap()
            clock.advance(max(0.0, pool.health.retry_at - clock()))
    assert pool.health.state is PoolState.FATAL
    assert pool.last_failure == reason
    assert f"last: {reason}" in caplog.text
    assert f"demo 0/2 fatal ({reason})" in master.status_line()


# -- 3. PAGING is a state with its own deadline


def test_paging_is_a_state_with_its_own_deadline(master, spawned, clock):
    master.manage_pools(clock())
    child = spawned[0]
    master.child_said(child, ["BOOTED"], clock())
    master.child_said(child, ["POLLING", str(clock() + 70)], clock())
    clock.advance(69)
    master.child_said(child, ["PAGING", str(clock() + 30)], clock())
    assert child.state == "paging" and child.deadline == clock() + 30
    clock.advance(25)  # past the poll's deadline and its grace: fine, it pages (and beats)
    child.last_seen = clock()
    assert child.overdue(clock()) is None
    clock.advance(15.5)  # past the page's deadline and its grace (10 s)
    child.last_seen = clock()
    assert child.overdue(clock()) == "paging 10.5 s past its deadline"


# -- smaller: HUP and the settings only a restart applies; stack dumps in one piece


def test_hup_says_which_settings_only_a_restart_applies(master, spawned, clock, caplog):
    path = pathlib.Path(master.config.path)
    path.write_text(
        path.read_text().replace("[caravand]\n", "[caravand]\npreload = true\nmetrics_bind = 127.0.0.1:9999\n")
    )
    with caplog.at_level(logging.WARNING, logger="caravand.master"):
        master.reload()
    assert "reload: [caravand] preload, metrics_bind changed: only a restart applies them" in caplog.text
    assert master.config.master.preload is False  # the running value stays, as the log says
    assert master.config.master.metrics_bind == "127.0.0.1:9469"


def test_stack_dump_is_logged_whole_from_the_childs_own_file(master, spawned, system, clock, tmp_path, caplog):
    master.stack_dir = str(tmp_path)
    master.manage_pools(clock())
    child = spawned[0]
    dump = 'Fatal Python error: Aborted\n\nCurrent thread 0x1 (most recent call first):\n  File "x.py", line 1'
    pathlib.Path(master.stack_file(child.pid)).write_text(dump)
    system.exits.append((child.pid, signal.SIGABRT))
    with caplog.at_level(logging.ERROR, logger="caravand.master"):
        master.reap()
    records = [r for r in caplog.records if r.getMessage().startswith("stack: demo#1")]
    assert len(records) == 1 and dump in records[0].getMessage()  # one record: never interleaved
    assert not os.path.exists(master.stack_file(child.pid))


@pytest.mark.parametrize("error", [BlockingIOError(11, "Resource temporarily unavailable"), PermissionError(13, "no")])
def test_an_embedded_endpoint_that_cannot_be_spawned_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, error):
    """Popen under a process limit raised through the master: a traceback and all its children's fate unclear."""
    import subprocess

    from caravand import main as main_module

    def no_process(*args, **kwargs):
        raise error

    monkeypatch.setattr(subprocess, "Popen", no_process)
    ini = tmp_path / "caravan.ini"
    ini.write_text("[caravand]\nendpoint_url = embedded\nembedded_port = 4698\n")
    assert main_module.main([str(ini)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "embedded SWF endpoint: cannot start its process" in err and str(error.errno) in err
