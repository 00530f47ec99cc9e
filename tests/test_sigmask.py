"""Helper threads leave the asynchronous signals to the main thread, where Python runs their handlers.

Seen: a moto endpoint whose SIGTERM (its master had died) reached the
server thread, so the main thread, in ``stop.wait()``, never ran the
handler: it outlived its master for half an hour. A child's QUIT reaching
its beat thread would likewise wait for the 60 s poll to end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from helpers import wait_for

from caravand.activity import ActivityTask
from caravand.embedded import EmbeddedEndpoint
from caravand.sigmask import ASYNC_SIGNALS, start_quiet


def blocked_in(pid: int, tid: int) -> set[int]:
    """The signals thread ``tid`` of ``pid`` blocks, from /proc."""
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        mask = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
    return {signum for signum in range(1, 65) if mask & (1 << (signum - 1))}


def blocked_by_helper_threads(pid: int) -> dict[int, set[int]]:
    """What each thread of ``pid`` but its main one blocks; a thread that ended meanwhile is left out.

    A request's thread of the embedded endpoint (the one that answered
    wait_ready's probe) may end between the listing and the reading.
    """
    masks = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        if tid != pid:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                masks[tid] = blocked_in(pid, tid)
    return masks


def test_a_quiet_thread_blocks_the_signals_and_its_starter_does_not():
    ready, done = threading.Event(), threading.Event()
    tids = []

    def run():
        tids.append(threading.get_native_id())
        ready.set()
        done.wait(5)

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    start_quiet(threading.Thread(target=run, daemon=True))
    assert ready.wait(5)
    try:
        assert set(ASYNC_SIGNALS) <= blocked_in(os.getpid(), tids[0])
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # the starter's mask is as it was
    finally:
        done.set()


def test_the_heartbeat_thread_leaves_signals_to_the_main_thread():
    data = {
        "taskToken": "t",
        "activityId": "a",
        "activityType": {"name": "A", "version": "1"},
        "workflowExecution": {"workflowId": "w", "runId": "r"},
    }
    task = ActivityTask(data, client=object())  # never called: stopped long before its first heartbeat
    task.start_heartbeats(30.0)
    try:
        heartbeater = task._heartbeater
        assert heartbeater is not None and heartbeater.is_alive()
        assert {signal.SIGTERM, signal.SIGQUIT, signal.SIGALRM} <= blocked_in(os.getpid(), heartbeater.native_id)
    finally:
        task.stop_heartbeats()


def test_the_embedded_endpoint_takes_sigterm_in_its_main_thread_and_stops():
    endpoint = EmbeddedEndpoint(port=0)
    endpoint.start()
    try:
        pid = endpoint.pid
        masks = blocked_by_helper_threads(pid)
        assert masks and all(signal.SIGTERM in blocked for blocked in masks.values())
        assert signal.SIGTERM not in blocked_in(pid, pid)
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: endpoint.process.poll() is not None, 10, message="the endpoint to stop on SIGTERM")
        assert time.monotonic() - started < 5
    finally:
        endpoint.stop()
