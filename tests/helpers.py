"""Helpers of the tests: a fake clock, ini files, waiting on conditions, running our commands as real processes."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import time


class FakeClock:
    """A fake monotonic clock: it moves only when a test advances it or the code under test sleeps on it.

    Pass the clock itself where code takes ``time.monotonic`` (``clock=fake``)
    and ``fake.sleep`` where it takes ``time.sleep``: each pause is recorded
    in ``sleeps`` (none is real) and moves the clock. ``on_sleep(count)``,
    when set, runs after each pause with the number of pauses so far (to
    stop a loop after so many).
    """

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.sleeps: list[float] = []
        self.on_sleep = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> bool:
        """Record the pause and move the clock; False, as a stop event's ``wait()`` that was not set."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))
        return False


def write_ini(directory, text: str, name: str = "caravan.ini") -> str:
    """Write ``text`` (dedented) as the ini file ``name`` in ``directory``; its path."""
    path = pathlib.Path(directory) / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def write_master_ini(path: pathlib.Path, endpoint, *pools: str, **master) -> pathlib.Path:
    """Write at ``path`` a daemon's ini for the test ``endpoint`` (its ``url``): [caravand], then ``pools``.

    ``master`` adds or overrides [caravand] keys. The emulator answers an
    empty poll after 1 s: poll_timeout says so, and a stop's shortest
    deadline (poll_timeout + 10 s read margin + 10 s to fail a task in
    hand) follows it. Metrics are off unless a test asks (``metrics_bind=``):
    the default port, 9469, is the one a developer's own caravand (the quick
    start's) holds while the tests run.
    """
    settings = {
        "endpoint_url": endpoint.url,
        "register_domains": "true",
        "poll_timeout": "1",
        "graceful_timeout": "25",
        "metrics_bind": "",
        **master,
    }
    text = "[caravand]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    return pathlib.Path(write_ini(path.parent, text + "".join(f"\n{pool}" for pool in pools), path.name))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def run_cli(*argv: str, timeout: float = 60, env: dict | None = None, input: str | None = None):
    """Run a console script of the installed package as a real process."""
    executable = os.path.join(os.path.dirname(sys.executable), argv[0])
    return subprocess.run(
        [executable, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else dict(os.environ),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


class Spawned:
    """A real process of ours; its stdout and stderr go to one file we can read while it runs."""

    def __init__(self, argv: list[str], log_path, env: dict | None = None):
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in kill()/wait()
        executable = os.path.join(os.path.dirname(sys.executable), argv[0])
        self.process = subprocess.Popen(
            [executable if os.path.exists(executable) else argv[0], *argv[1:]],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env if env is not None else dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.pid = self.process.pid

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_output(self, text: str, timeout: float = 30.0) -> str:
        def seen():
            if self.process.poll() is not None and text not in self.output():
                raise AssertionError(f"process exited ({self.process.returncode}) before {text!r}:\n{self.output()}")
            return text in self.output()

        wait_for(seen, timeout, message=f"{text!r} in the output of pid {self.pid}")
        return self.output()

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pid {self.pid} still running after {timeout} s:\n{self.output()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
