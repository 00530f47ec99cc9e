"""The flock pidfile (caravand.pidfile): held for life, free after a crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from caravand.pidfile import AlreadyRunning, PidFile

#: Another process that takes the lock the way PidFile does, says so, and waits for stdin to close.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, b"%d\\n" % os.getpid())
print("locked", flush=True)
sys.stdin.read()
"""


def test_acquire_writes_our_pid_and_release_removes_it(tmp_path):
    path = tmp_path / "run" / "caravand.pid"  # the directory is made
    lock = PidFile(str(path))
    lock.acquire()
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        assert lock.fd is not None
    finally:
        lock.release()
    assert not path.exists()
    assert lock.fd is None
    lock.release()  # twice is fine


def test_context_manager(tmp_path):
    path = tmp_path / "caravand.pid"
    with PidFile(str(path)) as lock:
        assert path.read_text() == f"{os.getpid()}\n"
        assert lock.fd is not None
    assert not path.exists()


def test_second_pidfile_in_another_process_is_refused(tmp_path):
    path = tmp_path / "caravand.pid"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(AlreadyRunning) as info:
            PidFile(str(path)).acquire()
        assert info.value.exit_code == 1
        assert str(info.value) == f"{path} is locked: caravand already runs (pid {holder.pid})"
        assert path.read_text() == f"{holder.pid}\n"  # the holder's file is left alone
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # The holder is gone: its lock went with it, and its file does not block us.
    assert path.exists()
    with PidFile(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"


def test_second_pidfile_on_the_same_path_is_refused(tmp_path):
    """flock locks belong to the open file: a second open in the same process conflicts too."""
    path = str(tmp_path / "caravand.pid")
    with PidFile(path):
        with pytest.raises(AlreadyRunning, match=rf"\(pid {os.getpid()}\)"):
            PidFile(path).acquire()
        assert open(path).read() == f"{os.getpid()}\n"


def test_stale_file_does_not_block(tmp_path):
    path = tmp_path / "caravand.pid"
    path.write_text("999999999\nleftover\n")  # a dead pid, no lock: a crash's leftover
    with PidFile(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"  # truncated, not overwritten in part
    assert not path.exists()


def test_a_pidfile_unlinked_while_we_lock_it_is_not_taken_for_ours(tmp_path, monkeypatch):
    """The old master unlinks its file after our open and before our lock: we must lock the path's file.

    Else we hold an unlinked file, and a third master creates a new one and
    runs beside us.
    """
    from caravand import pidfile as module

    path = tmp_path / "caravand.pid"
    old = PidFile(str(path))
    old.acquire()
    real_flock = module.fcntl.flock
    calls = []

    def flock_after_the_old_master_left(fd, operation):
        calls.append(fd)
        if len(calls) == 1:
            old.release()  # between our open() and our flock()
        return real_flock(fd, operation)

    monkeypatch.setattr(module.fcntl, "flock", flock_after_the_old_master_left)
    new = PidFile(str(path))
    new.acquire()
    try:
        assert len(calls) == 2  # it noticed, and locked the path's own file
        assert os.stat(path).st_ino == os.fstat(new.fd).st_ino
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        new.release()
