"""caravand, as real processes, against failures of its machine's setup and of SWF (issues 7 and 8).

Each starts a real master against the session's moto server (or a scripted
endpoint) and waits on its log with a deadline.
"""

from __future__ import annotations

import os
import signal

import pytest
from helpers import wait_for
from test_master_e2e import (  # noqa: F401 - fixtures
    booted,
    caravand,
    demo_pool,
    master_env,
    pool_children,
    write_ini,
)

pytestmark = pytest.mark.e2e


def test_partial_credentials_are_one_line_in_the_registrar_and_the_children(caravand, endpoint, tmp_path):
    """Only AWS_ACCESS_KEY_ID set: each process says so in one line, and the pool gives up, never a traceback."""
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Partial"))
    env = master_env()
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    master = caravand(ini, env=env)
    wait_for(lambda: master.output().count("failed to boot: demo#1: ") >= 2, 30, message="two failed boots")
    log = master.output()
    assert "Traceback" not in log, log
    failed = next(line for line in log.splitlines() if "failed to boot: demo#1: " in line)
    assert "incomplete AWS credentials" in failed and "missing: AWS_SECRET_ACCESS_KEY" in failed, failed
    registration = next(line for line in log.splitlines() if "registration failed: demo" in line)
    assert "credentials" in registration


def test_good_bad_bad_good_reloads_keep_the_serving_children(caravand, endpoint, tmp_path):
    """Two HUPs with modules that fail to import are refused (checked in a throwaway process); the children serve on."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "syntax_bad.py").write_text("def broken(:\n")
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Reloads", pythonpath=str(lib)))
    good = ini.read_text()
    master = caravand(ini)
    booted(master, "demo#1")
    serving = set(pool_children(master.pid)["demo"])
    for refused, module in enumerate(("broken_import", "syntax_bad"), start=1):
        ini.write_text(good.replace("modules = caravand.examples.demo", f"modules = {module}"))
        master.send(signal.SIGHUP)
        wait_for(lambda n=refused: master.output().count("reload refused:") == n, 30, message=f"refusal {refused}")
        assert module in master.output().split("reload refused:")[-1].splitlines()[0]
        assert set(pool_children(master.pid)["demo"]) == serving  # never retired, never replaced
    ini.write_text(good.replace("processes = 1", "processes = 2"))
    master.send(signal.SIGHUP)
    wait_for(lambda: "reloaded:" in master.output(), 30, message="the good reload")
    booted(master, "demo#2")
    assert serving <= set(pool_children(master.pid)["demo"])  # resized in place
    assert "Traceback" not in master.output()


def test_a_silent_endpoint_never_blocks_the_master(caravand, endpoint, tmp_path):
    """Seen: register_domains against an endpoint that never answers blocked the master 60 s, deaf to SIGTERM
    and HUP, then every child that had beaten was killed as silent. Registration is the registrar's now."""
    import time

    from endpoints import SilentEndpoint

    with SilentEndpoint() as silent:
        ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Silent"), endpoint_url=silent.url)
        master = caravand(ini)
        master.wait_output("starting: master")
        wait_for(lambda: silent.accepted >= 1, 10, message="the registrar to reach the silent endpoint")
        sent = time.monotonic()
        master.send(signal.SIGHUP)
        master.wait_output("reloaded:", timeout=10)
        master.send(signal.SIGTERM)
        assert master.wait(timeout=15) == 0
        assert time.monotonic() - sent < 10  # a loop that waited on the network would take a minute
        assert "hung:" not in master.output() and "Traceback" not in master.output()


def test_a_childs_helper_threads_leave_the_masters_signals_to_its_main_thread(caravand, endpoint, tmp_path):
    """QUIT must cut a held poll and ALRM fail a task in hand: a signal taken by the beat thread would wait."""
    from test_sigmask import blocked_in

    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Masks"))
    master = caravand(ini)
    booted(master, "demo#1")
    (child,) = pool_children(master.pid)["demo"]

    helpers = [int(tid) for tid in os.listdir(f"/proc/{child}/task") if int(tid) != child]
    assert helpers  # the beat thread at least
    for tid in helpers:
        assert {signal.SIGQUIT, signal.SIGALRM, signal.SIGTERM, signal.SIGUSR2} <= blocked_in(child, tid)
    assert signal.SIGQUIT not in blocked_in(child, child)
