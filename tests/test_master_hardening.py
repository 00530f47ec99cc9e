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
    fake_reload_check_passed,
    logged,
    make_master,
    spawned,
    system,
    write_config,
)

from caravand import child as child_module
from caravand import config, protocol, swf
from caravand.master import REGISTRATION_TIMEOUT, Master
from caravand.states import ChildState, PoolState


@pytest.fixture
def master(tmp_path, system):
    return make_master(write_config(tmp_path), system)


@pytest.fixture(autouse=True)
def reload_checks_pass(monkeypatch, request):
    """Reloads apply at once, as if their import check passed; tests of the check itself opt out."""
    if "real_reload_check" not in request.keywords:
        monkeypatch.setattr(Master, "start_reload_check", fake_reload_check_passed)


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


def config_with(tmp_path, before: str, after: str):
    cfg = write_config(tmp_path)
    path = pathlib.Path(cfg.path)
    path.write_text(path.read_text().replace(before, after))
    return config.load(str(path))


def test_first_children_wait_for_the_first_domain_registration_attempt(tmp_path, system, clock, registrars,
                                                                      monkeypatch):  # fmt: skip
    master = make_master(config_with(tmp_path, "[caravand]\n", "[caravand]\nregister_domains = true\n"), system)
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


def test_a_registrar_past_its_timeout_is_killed(master, system, clock, registrars, monkeypatch, logged):
    monkeypatch.setattr(Master, "spawn", lambda self, pool: None)
    master.manage_pools(clock())
    clock.advance(REGISTRATION_TIMEOUT)
    master.watch_children(clock())
    assert system.killed == [(7001, signal.SIGKILL)]
    master.watch_children(clock())
    assert len(system.killed) == 1
    assert logged() == ["ERROR killing: registrar of demo (pid 7001): still running after 120 s"]
    system.exits.append((7001, signal.SIGKILL))
    master.reap()
    assert logged() == ["ERROR registration failed: demo (killed by SIGKILL); retrying in 2 s"]


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
            master.child_said(child, protocol.booted(), clock())
            master.child_said(child, protocol.failed(reason), clock())
            clock.advance(6)  # past min_uptime: yet giving up is a failed start (EXIT_BOOT_FAILED)
            system.exits.append((child.pid, exited(child_module.EXIT_BOOT_FAILED)))
            master.reap()
            clock.advance(max(0.0, pool.health.retry_at - clock()))
    assert pool.health.state is PoolState.FATAL
    assert pool.last_failure == reason
    assert f"gave up: demo (4 failed starts in 60 s; last: {reason}); retrying in 300 s" in caplog.messages
    assert f"demo 0/2 fatal ({reason})" in master.status_line()


# -- 3. PAGING is a state with its own deadline


def test_paging_is_a_state_with_its_own_deadline(master, spawned, clock):
    master.manage_pools(clock())
    child = spawned[0]
    master.child_said(child, protocol.booted(), clock())
    master.child_said(child, protocol.busy(ChildState.POLLING, clock() + 70), clock())
    clock.advance(69)
    master.child_said(child, protocol.busy(ChildState.PAGING, clock() + 30), clock())
    assert child.state is ChildState.PAGING and child.deadline == clock() + 30
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


def test_without_register_domains_children_start_while_the_types_are_registered(master, clock, registrars,
                                                                                 monkeypatch):  # fmt: skip
    """Polls need the domain only: no task of an unregistered type can exist. A throttled deploy waits for nothing."""
    spawned_pools = []
    monkeypatch.setattr(Master, "spawn", lambda self, pool: spawned_pools.append(pool.name) or None)
    master.manage_pools(clock())
    assert registrars == ["demo"]
    assert spawned_pools == ["demo", "demo"]


def test_nothing_to_register_forks_no_registrar(tmp_path, system, clock, registrars, monkeypatch):
    cfg = config_with(
        tmp_path, "modules = caravand.examples.demo\n", "modules = caravand.examples.demo\nregister = false\n"
    )
    master = make_master(cfg, system)
    monkeypatch.setattr(Master, "spawn", lambda self, pool: None)
    master.manage_pools(clock())
    assert registrars == []
    assert master.pools["demo"].registration == "done" and master.pools["demo"].may_serve


def test_a_hup_that_turns_register_domains_on_registers_the_pools_it_keeps(master, system, clock, registrars,
                                                                           monkeypatch):  # fmt: skip
    monkeypatch.setattr(Master, "spawn", lambda self, pool: None)
    master.manage_pools(clock())
    system.exits.append((7001, exited(0)))
    master.reap()
    assert master.pools["demo"].registration == "done"
    path = pathlib.Path(master.config.path)
    path.write_text(path.read_text().replace("[caravand]\n", "[caravand]\nregister_domains = true\n"))
    master.reload()
    master.manage_pools(clock())
    assert registrars == ["demo", "demo"]
    assert master.pools["demo"].may_serve  # it serves meanwhile: its domain existed


def test_a_restarted_embedded_endpoint_registers_every_pool_again_first(tmp_path, system, clock, registrars,
                                                                        monkeypatch):  # fmt: skip
    """Its state is gone: a registrar still running against the dead one ends, and a new one runs."""
    master = make_master(config_with(tmp_path, "[caravand]\n", "[caravand]\nregister_domains = true\n"), system)
    monkeypatch.setattr(Master, "spawn", lambda self, pool: None)
    monkeypatch.setattr(Master, "retire", lambda self, child, why: None)
    master.selector = selectors.DefaultSelector()
    master.manage_pools(clock())  # registrar 7001 runs
    read_end, write_end = os.pipe()
    launches = []

    class FakeEmbedded:
        pid = 4242
        process = type("P", (), {"stdout": os.fdopen(read_end), "returncode": None})()

        def launch(self):
            launches.append(clock())
            return self.process.stdout

        def read_ready_line(self):
            return "http://127.0.0.1:4599"

    master.embedded, master.embedded_listening = FakeEmbedded(), True
    try:
        master.embedded_died(signal.SIGKILL)
        master.manage_embedded(clock())  # it had served: relaunched at once
        assert launches == [clock()] and master.embedded_starting
        master.embedded_said()  # READY
        assert (7001, signal.SIGKILL) in system.killed  # it registered with the dead endpoint
        pool = master.pools["demo"]
        assert pool.registration == "pending" and not pool.may_serve
        master.manage_pools(clock())
        assert registrars == ["demo", "demo"]
        system.exits.append((7001, signal.SIGKILL))
        master.reap()
        assert pool.registration == "running"  # the killed one's exit is no news
        system.exits.append((7002, exited(0)))
        master.reap()
        assert pool.registration == "done" and pool.may_serve
    finally:
        master.selector.close()
        os.close(write_end)
        master.embedded.process.stdout.close()


def test_an_embedded_endpoint_that_dies_before_listening_is_relaunched_with_backoff(master, clock, monkeypatch):
    """A port still held, moto broken: each relaunch costs ~0.5 s of CPU; never a hot loop, never given up."""
    launched = []

    class Dying:
        pid = 4243
        process = type("P", (), {"stdout": None, "returncode": None})()

        def launch(self):
            launched.append(clock())
            if len(launched) == 2:
                raise BlockingIOError(11, "Resource temporarily unavailable")
            master.embedded_starting = False  # what the selector would see: EOF, no READY
            return None

    master.embedded = Dying()
    monkeypatch.setattr(
        master, "selector", type("S", (), {"register": lambda *a: None, "unregister": lambda *a: None})()
    )
    delays = []
    for _ in range(4):
        master.embedded_died(exited(2))
        assert master.embedded_relaunch_at > clock()  # not at once: it never listened
        delays.append(master.embedded_relaunch_at - clock())
        before = len(launched)
        master.manage_embedded(clock())
        assert len(launched) == before  # nothing before its time
        clock.advance(master.embedded_relaunch_at - clock())
        master.manage_embedded(clock())
        if master.embedded_relaunch_at is not None:  # the launch itself failed: again later
            clock.advance(master.embedded_relaunch_at - clock())
            master.manage_embedded(clock())
    assert delays == sorted(delays) and delays[-1] > delays[0]  # growing
    assert len(launched) == 5


def test_a_dead_masters_stack_directory_is_removed_by_the_next(tmp_path, monkeypatch):
    """A master killed outright (SIGKILL, the watchdog) cannot remove its own: the next one does."""
    from caravand.master import make_stack_dir

    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    dead = tmp_path / "caravand-stacks-999999999-abcd"  # no such pid
    dead.mkdir()
    (dead / "123.stack").write_text("old")
    alive = tmp_path / f"caravand-stacks-{os.getppid()}-efgh"  # a running master's
    alive.mkdir()
    mine = make_stack_dir(os.getpid())
    assert not dead.exists() and alive.exists()
    assert os.path.dirname(mine) == str(tmp_path) and os.path.basename(mine).startswith(
        f"caravand-stacks-{os.getpid()}-"
    )


# -- issue 8, item 2: a reload imports the new modules in a throwaway process, never in the loop


REAL_START_RELOAD_CHECK = Master.start_reload_check


@pytest.fixture
def checks(monkeypatch, spawned):
    """The parent's side of the check's fork: a fake pid and the write end of its pipe, for the test to write."""
    monkeypatch.setattr(Master, "start_reload_check", REAL_START_RELOAD_CHECK)
    forked = []

    def fork(self, pool, *fds, failed_start=True):
        assert pool is None and failed_start is False
        # The master closes its copy of the write end after fork, as a real parent must.
        forked.append({"pid": 8000 + len(forked) + 1, "write_end": os.dup(fds[1])})
        return forked[-1]["pid"]

    monkeypatch.setattr(Master, "fork", fork)
    yield forked
    for check in forked:
        os.close(check["write_end"])


def hup_with(master, before, after):
    path = pathlib.Path(master.config.path)
    path.write_text(path.read_text().replace(before, after))
    master.reload()


@pytest.mark.real_reload_check
def test_a_reload_whose_modules_do_not_import_is_refused_and_nothing_changes(master, spawned, system, clock, checks,
                                                                              caplog):  # fmt: skip
    master.manage_pools(clock())
    boot_all(master)
    before = master.config
    hup_with(master, "modules = caravand.examples.demo", "modules = caravand.examples.greeting")
    assert len(checks) == 1 and master.config is before  # nothing applied while the check runs
    os.write(checks[0]["write_end"], b"caravan.ini: [pool:demo] modules: cannot import module 'x': SyntaxError")
    system.exits.append((checks[0]["pid"], exited(1)))
    with caplog.at_level(logging.ERROR, logger="caravand.master"):
        master.reap()
    assert "reload refused: caravan.ini: [pool:demo] modules: cannot import module 'x': SyntaxError" in caplog.text
    assert master.config is before and master.reload_checks == {}
    master.manage_pools(clock())
    assert len(spawned) == 2 and not any(c.retiring for c in spawned)  # the serving children serve on


@pytest.mark.real_reload_check
def test_a_reload_whose_modules_import_is_applied_when_its_check_ends(master, spawned, system, clock, checks):
    master.manage_pools(clock())
    boot_all(master)
    hup_with(master, "processes = 2", "processes = 3")
    assert master.pools["demo"].target == 2
    system.exits.append((checks[0]["pid"], exited(0)))
    master.reap()
    assert master.pools["demo"].target == 3


@pytest.mark.real_reload_check
def test_a_newer_hup_supersedes_a_check_still_running(master, spawned, system, clock, checks):
    master.manage_pools(clock())
    hup_with(master, "processes = 2", "processes = 3")
    hup_with(master, "processes = 3", "processes = 4")
    assert (8001, signal.SIGKILL) in system.killed
    system.exits.append((8001, signal.SIGKILL))
    master.reap()
    assert master.pools["demo"].target == 2  # the superseded one's end is no news
    system.exits.append((8002, exited(0)))
    master.reap()
    assert master.pools["demo"].target == 4


@pytest.mark.real_reload_check
def test_a_check_past_its_deadline_is_killed_and_the_reload_refused(master, spawned, system, clock, checks, caplog):
    from caravand.master import RELOAD_CHECK_TIMEOUT

    master.manage_pools(clock())
    hup_with(master, "processes = 2", "processes = 3")
    clock.advance(RELOAD_CHECK_TIMEOUT)
    master.watch_children(clock())
    assert (8001, signal.SIGKILL) in system.killed
    system.exits.append((8001, signal.SIGKILL))
    with caplog.at_level(logging.ERROR, logger="caravand.master"):
        master.reap()
    assert f"importing its modules took longer than {RELOAD_CHECK_TIMEOUT:g} s" in caplog.text
    assert master.pools["demo"].target == 2


@pytest.mark.real_reload_check
def test_a_stop_ends_a_check_and_waits_for_it(master, spawned, system, clock, checks):
    master.manage_pools(clock())
    hup_with(master, "processes = 2", "processes = 3")
    master.begin_stop("graceful")
    assert (8001, signal.SIGKILL) in system.killed
    for child in list(master.children.values()):
        system.exits.append((child.pid, exited(0)))
    master.reap()
    master.check_stop(clock())
    assert not master.done
    system.exits.append((8001, signal.SIGKILL))
    master.reap()
    master.check_stop(clock())
    assert master.done and master.pools["demo"].target == 2
