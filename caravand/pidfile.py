"""A pidfile held by an ``fcntl.flock`` lock for the master's whole life.

The lock, not the file's existence, says whether a master runs: a file left
by a crash does not block the next start (the kernel dropped the lock with
the process), and a second master on the same path is refused at once.
python-daemon's ``DaemonContext`` enters it after detaching, so the pid
written is the daemon's.
"""

from __future__ import annotations

import fcntl
import os

from caravand.swf import CaravanError, ConfigError


class AlreadyRunning(CaravanError):
    """Another master holds the pidfile's lock."""

    exit_code = 1


class PidFile:
    """Context manager: lock and write the pidfile on enter, remove it on exit."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        while True:
            try:
                os.makedirs(directory, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(f"pidfile {self.path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise AlreadyRunning(f"{self.path} is locked: caravand already runs (pid {other})") from None
            if self._still_at_path(fd):
                break
            # The master that held it unlinked it between our open and our
            # lock: we hold a file nobody else can find. Take the path's own.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd

    def _still_at_path(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()
