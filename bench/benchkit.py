"""What both benchmarks share: a fresh endpoint, caravand as a real process, and the CPU of a process tree.

Everything runs on 127.0.0.1 against a moto server that the benchmark
starts itself (:class:`caravand.embedded.EmbeddedEndpoint`); every process
it starts is stopped by PID, never by name, whatever happens.

CPU of a process tree, from /proc (no psutil: it is not a dependency):
a process's ``utime + stime`` is its own CPU, and its ``cutime + cstime``
that of every descendant it has reaped (the kernel adds a reaped child's
own and reaped-children times to its parent's). So the sum of all four
fields over the live processes of a tree counts the live ones and every one
that already exited and was reaped inside the tree. What it misses: a
process that exits and is reaped between the reads of its parent and of
itself (a benchmark window has none: caravand forks nothing while it
serves, and the bare loop never forks), and the ticks' resolution
(1/CLK_TCK, 10 ms, per process).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator

import boto3
import botocore.config

from caravand.embedded import EmbeddedEndpoint
from caravand.pdeath import set_parent_death_signal

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CARAVAND = os.path.join(os.path.dirname(sys.executable), "caravand")
REGION = "us-east-1"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
#: How long the endpoint holds an empty poll, as SWF does for 60 s; caravand's poll_timeout says the same.
#: 5 s: the longest the brief allows (fewer empty polls: closer to SWF), short enough for a quick stop.
POLL_HOLD = 5.0
#: What would make caravand think it runs under systemd, or point boto3 elsewhere.
FOREIGN_VARIABLES = ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "AWS_PROFILE")


def environment(**extra: str) -> dict[str, str]:
    """The environment of every client process: dummy credentials (moto checks none), no systemd, unbuffered."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_VARIABLES}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    env.pop("AWS_ENDPOINT_URL_SWF", None)
    env.update(extra)
    return env


def die_with_us(signum: int = signal.SIGTERM):
    """A ``preexec_fn``: the child gets ``signum`` if the benchmark dies (SIGKILLed, or a test's timeout).

    What the benchmark starts is stopped by PID in its ``finally`` blocks;
    this covers the death that runs no ``finally``. (The endpoint does the
    same by itself: EmbeddedEndpoint passes it ``--parent``.)
    """
    return lambda: set_parent_death_signal(signum)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def fresh_endpoint(poll_hold: float | None = None) -> Iterator[EmbeddedEndpoint]:
    """A new moto server on a free loopback port (holding polls POLL_HOLD s unless said), stopped on the way out."""
    endpoint = EmbeddedEndpoint(port=0, poll_hold=POLL_HOLD if poll_hold is None else poll_hold)
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.stop()


def swf_client(url: str, read_timeout: float = 30.0):
    """The benchmark's own client (starts, lists, registrations): never part of a measured tree."""
    config = botocore.config.Config(read_timeout=read_timeout, retries={"mode": "standard", "max_attempts": 3})
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
    return session.client("swf", endpoint_url=url, config=config)


# -- processes, seen from /proc


def children(pid: int) -> list[int]:
    pids: list[int] = []
    for path in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids += [int(word) for word in path.read_text().split()]
    return pids


def tree(roots: Iterable[int]) -> list[int]:
    """``roots`` and all their descendants alive now (zombies included: their times are still readable)."""
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += children(pid)
    return seen


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """``pid``'s user + system CPU, with its reaped descendants' (``reaped``); 0 if it is gone."""
    fields = stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 here, counted from the state.
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICK


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """The CPU of a whole process tree so far, the processes it already reaped included (see the module doc)."""
    return sum(cpu_seconds(pid) for pid in tree(roots))


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def title(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def unique_memory_mb(pid: int) -> float:
    """Private_Clean + Private_Dirty from smaps_rollup: what this process alone holds (its USS), in MB."""
    total_kb = 0
    for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Private_Clean", "Private_Dirty"):
            total_kb += int(value.split()[0])
    return total_kb / 1024


def started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot): with the pid, names one process even once pids wrap."""
    fields = stat_fields(pid)
    return fields[19] if fields else None


def kill_all(processes: dict[int, str | None], signum: int = signal.SIGKILL) -> None:
    """Signal each pid of ``{pid: started(pid)}`` that is still the process seen then (pids get reused)."""
    for pid, start in processes.items():
        if start is not None and started(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def wait_for(predicate, timeout: float, message: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


# -- caravand, a real process


def master_ini(directory: pathlib.Path, master: dict[str, str], pools: dict[str, dict[str, str]], extra="") -> str:
    """Write ``caravan.ini`` in ``directory``: [caravand] from ``master``, a [pool:NAME] per pool, then ``extra``."""
    lines = ["[caravand]"] + [f"{key} = {value}" for key, value in master.items()]
    for name, keys in pools.items():
        lines += ["", f"[pool:{name}]"] + [f"{key} = {value}" for key, value in keys.items()]
    path = directory / "caravan.ini"
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


#: [loggers] sections that stamp each line with time.time() to the microsecond (the default has milliseconds
#: of a formatted local time), for the supervision benchmark to compare with its own clock.
PRECISE_LOGGING = """
[loggers]
keys = root, botocore

[handlers]
keys = stderr

[formatters]
keys = precise

[logger_root]
level = INFO
handlers = stderr

[logger_botocore]
level = WARNING
handlers =
qualname = botocore

[handler_stderr]
class = StreamHandler
args = (sys.stderr,)
formatter = precise

[formatter_precise]
format = %(created).6f [%(process)d] %(levelname)s %(name)s: %(message)s
"""


class Caravand:
    """``caravand INI`` as a child of the benchmark; its output goes to a file that we read while it runs."""

    def __init__(self, ini: str, log_path: pathlib.Path):
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.launched_at = time.time()
        self.process = subprocess.Popen(
            [CARAVAND, ini],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(),
            preexec_fn=die_with_us(signal.SIGTERM),  # a graceful stop; its children follow it
        )
        self.pid = self.process.pid

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_output(self, text: str, timeout: float = 60.0, count: int = 1) -> str:
        def seen():
            output = self.output()
            if self.process.poll() is not None:
                raise RuntimeError(f"caravand exited ({self.process.returncode}) before {text!r}:\n{output[-3000:]}")
            return output if output.count(text) >= count else None

        try:
            return wait_for(seen, timeout, f"{count} x {text!r} in caravand's log", interval=0.1)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log ends with:\n{self.output()[-3000:]}") from None

    def stop(self, endpoint: EmbeddedEndpoint | None = None, timeout: float = 40.0) -> None:
        """TERM the master (the endpoint answers its children's held polls at once); KILL by PID what is left."""
        family = {pid: started(pid) for pid in tree([self.pid]) if pid != self.pid}
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                if endpoint is not None:
                    endpoint.release_polls()
                self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_all(family)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()


#: A line of PRECISE_LOGGING: time.time(), the writer's pid, the level, the logger, the message.
PRECISE_LINE = re.compile(r"^(?P<time>\d+\.\d+) \[(?P<pid>\d+)\] (?P<level>\w+) (?P<logger>[\w.]+): (?P<message>.*)$")


class LogReader:
    """The lines of a PRECISE_LOGGING log as they come: ``new()`` returns those written since the last call."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.offset = 0
        self.partial = ""

    def new(self) -> list[re.Match]:
        with open(self.path) as log:
            log.seek(self.offset)
            text = self.partial + log.read()
            self.offset = log.tell()
        *lines, self.partial = text.split("\n")
        return [match for match in map(PRECISE_LINE.match, lines) if match]
