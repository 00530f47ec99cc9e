"""The caravand master as a real process: its children, signals, reloads, systemd and daemon modes.

Each test writes an ini into tmp_path that points the pools at the test's
moto server, runs ``caravand that.ini`` as a subprocess (PYTHONPATH holds
tests/workloads), and watches it from outside: its log, its children (read
from /proc, recognised by their process titles) and the SWF histories.
Activity tasks are scheduled by the test itself acting as the decider of a
``Harness`` workflow, so that no decider pool is needed where none is tested.
"""

from __future__ import annotations

import collections
import glob
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import run_cli, wait_for
from helpers import write_master_ini as write_ini

from caravand import swf

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).parent.parent
WORKLOADS = str(pathlib.Path(__file__).parent / "workloads")
CARAVAND = os.path.join(os.path.dirname(sys.executable), "caravand")
#: ``caravand: decider demo#1 [D/default] polling``
TITLE = re.compile(r"^caravand: (?P<kind>\S+) (?P<pool>\S+)#(?P<index>\d+) \[(?P<where>[^\]]*)\] (?P<state>\S+)")
#: Variables that would make caravand think it runs under systemd.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")


# -- processes, seen from /proc


#: The start time (in clock ticks since boot) of each pid the tests have seen, so that a pid the kernel
#: gave to a new process (pid_max is often 32768: a busy machine wraps in minutes) is not taken for ours.
_STARTED: dict[int, str] = {}


def alive(pid: int) -> bool:
    """True while ``pid`` runs, and is still the process first seen under it (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return False
    if len(fields) < 20 or fields[0] == "Z":
        return False
    started = fields[19]  # field 22 of /proc/PID/stat: starttime
    return _STARTED.setdefault(pid, started) == started


def title_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children_of(pid: int) -> dict[int, str]:
    """The live children of ``pid``, with their process titles."""
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as children:
                pids.update(int(word) for word in children.read().split())
        except OSError:
            pass
    titles = {child: title_of(child) for child in sorted(pids) if alive(child)}
    return {child: title for child, title in titles.items() if title}


def pool_children(master_pid: int) -> dict[str, dict[int, str]]:
    """The master's children by pool name: {pool: {pid: title}}."""
    pools: dict[str, dict[int, str]] = collections.defaultdict(dict)
    for pid, title in children_of(master_pid).items():
        match = TITLE.match(title)
        if match:
            pools[match["pool"]][pid] = title
    return pools


def counts(master_pid: int) -> dict[str, int]:
    return {pool: len(children) for pool, children in pool_children(master_pid).items()}


def wait_counts(master_pid: int, expected: dict[str, int], timeout: float = 20.0) -> dict[str, dict[int, str]]:
    """Wait until the master has exactly ``expected`` children per pool (titles); returns them."""
    wait_for(
        lambda: (
            counts(master_pid) == expected
            and all(t.endswith((" polling", " idle")) for c in pool_children(master_pid).values() for t in c.values())
        ),
        timeout,
        message=f"children per pool {expected} (now {counts(master_pid)})",
    )
    return pool_children(master_pid)


def wait_gone(pids, timeout: float, message: str) -> None:
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout, interval=0.02, message=message)


def kill_quietly(pid: int, signum: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def file_text(path: pathlib.Path, timeout: float = 10.0, message: str = "") -> str:
    """Wait until ``path`` exists with some text (workloads signal through files); returns the text."""
    return wait_for(lambda: path.exists() and path.read_text(), timeout, message=message or f"{path.name} written")


# -- inis


def pool_section(name: str, use: str = "egg:caravand#decider", **keys) -> str:
    lines = [f"[pool:{name}]", f"use = {use}"] + [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def demo_pool(name: str, domain: str, task_list: str = "default", processes: int = 1, **keys) -> str:
    return pool_section(
        name, domain=domain, task_list=task_list, modules="caravand.examples.demo", processes=processes, **keys
    )


def master_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [WORKLOADS, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def caravand(spawn, endpoint):
    """Start ``caravand INI`` as a subprocess; at teardown its children and itself are SIGKILLed by PID."""
    started = []

    def start(ini, *args: str, env: dict | None = None):
        proc = spawn("caravand", str(ini), *args, env=env or master_env())
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.process.poll() is None:
            orphans = list(children_of(proc.pid))
            proc.kill()
            for pid in orphans:
                kill_quietly(pid)


def booted(proc, label: str, count: int = 1, timeout: float = 20.0) -> None:
    """Wait until the master's log says ``booted: LABEL`` ``count`` times."""
    wait_for(
        lambda: proc.process.poll() is None and proc.output().count(f"booted: {label} ") >= count,
        timeout,
        message=f"{count} x 'booted: {label}' (master alive: {proc.process.poll() is None}):\n{proc.output()}",
    )


# -- SWF, as seen by the test


@pytest.fixture
def client(endpoint):
    return swf.make_client(swf.Endpoint(endpoint_url=endpoint.url, region="us-east-1"))


def history(client, domain: str, workflow_id: str) -> list[dict]:
    runs = []
    for lister in (client.list_open_workflow_executions, client.list_closed_workflow_executions):
        runs += lister(domain=domain, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id})[
            "executionInfos"
        ]
    run = [r for r in runs if r["execution"]["workflowId"] == workflow_id][-1]
    return client.get_workflow_execution_history(domain=domain, execution=run["execution"])["events"]


def event_types(client, domain: str, workflow_id: str) -> list[str]:
    return [event["eventType"] for event in history(client, domain, workflow_id)]


def schedule_activity(client, domain: str, workflow_id: str, activity: str, task_list: str, task_input: str) -> None:
    """Start a ``Harness`` execution and, as its decider, schedule one activity task (``activity`` 1.0)."""
    try:
        client.register_workflow_type(domain=domain, name="Harness", version="1.0")
    except client.exceptions.TypeAlreadyExistsFault:
        pass
    client.start_workflow_execution(
        domain=domain,
        workflowId=workflow_id,
        workflowType={"name": "Harness", "version": "1.0"},
        taskList={"name": "harness"},
        executionStartToCloseTimeout="600",
        taskStartToCloseTimeout="60",
        childPolicy="TERMINATE",
    )
    task = client.poll_for_decision_task(domain=domain, taskList={"name": "harness"}, identity="pytest")
    assert task.get("taskToken") and task["workflowExecution"]["workflowId"] == workflow_id, task
    client.respond_decision_task_completed(
        taskToken=task["taskToken"],
        decisions=[
            {
                "decisionType": "ScheduleActivityTask",
                "scheduleActivityTaskDecisionAttributes": {
                    "activityType": {"name": activity, "version": "1.0"},
                    "activityId": "work",
                    "taskList": {"name": task_list},
                    "input": task_input,
                },
            }
        ],
    )
    assert "ActivityTaskScheduled" in event_types(client, domain, workflow_id), history(client, domain, workflow_id)


def activity_outcomes(client, domain: str, workflow_id: str) -> list[tuple[str, str]]:
    """(event type, result or reason) of each closed activity task of the execution."""
    outcomes = []
    for event in history(client, domain, workflow_id):
        if event["eventType"] == "ActivityTaskCompleted":
            outcomes.append((event["eventType"], event["activityTaskCompletedEventAttributes"].get("result")))
        elif event["eventType"] == "ActivityTaskFailed":
            outcomes.append((event["eventType"], event["activityTaskFailedEventAttributes"].get("reason")))
    return outcomes


def start_demo(client, domain: str, workflow_id: str, task_list: str = "default") -> None:
    client.start_workflow_execution(
        domain=domain,
        workflowId=workflow_id,
        workflowType={"name": "Demo", "version": "0.1"},
        taskList={"name": task_list},
    )


def demo_decided(client, domain: str, workflow_id: str, task_list: str = "default", timeout: float = 20.0) -> None:
    """Start a Demo execution and wait until a decider answered its first decision (its timer)."""
    start_demo(client, domain, workflow_id, task_list)
    wait_for(
        lambda: "TimerStarted" in event_types(client, domain, workflow_id),
        timeout,
        message=f"{workflow_id} to be decided",
    )


# -- children that die or hang are replaced


def test_sigkilled_child_is_replaced(caravand, endpoint, tmp_path):
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Kill"))
    master = caravand(ini)
    booted(master, "demo#1")
    [(old, title)] = wait_counts(master.pid, {"demo": 1})["demo"].items()
    assert title.startswith("caravand: decider demo#1 [Kill/default] ")

    os.kill(old, signal.SIGKILL)
    booted(master, "demo#1", count=2)
    [new] = wait_counts(master.pid, {"demo": 1})["demo"]
    assert new != old and not alive(old)
    log = master.output()
    assert log.count("spawned: demo#1 ") == 2
    assert f"crashed: demo#1 (pid {old}, killed by SIGKILL)" in log
    assert master.process.poll() is None


def test_sigterm_right_after_a_spawn_reaches_the_booting_child(caravand, endpoint, tmp_path):
    """A SIGTERM that reaches children while they boot stops them once booted, with no SIGKILL.

    (The fork window itself, where such a signal was once lost, is covered
    by test_master_unit's test of the signal mask around fork.)
    """
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Early", processes=2), graceful_timeout="30")
    master = caravand(ini)
    wait_for(lambda: master.output().count("spawned: demo#") == 2, 20, message="two spawns")
    started = time.monotonic()
    master.send(signal.SIGTERM)
    assert master.wait(timeout=20) == 0
    assert time.monotonic() - started < 10  # far below graceful_timeout: no child waited for its SIGKILL
    log = master.output()
    assert "killing:" not in log and "SIGKILL" not in log


def test_hung_activity_is_aborted_with_a_stack_dump_and_replaced(caravand, endpoint, client, tmp_path):
    hang_keys = {"domain": "Hung", "modules": "hung_activities", "heartbeat_grace": 1, "kill_grace": 2}
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        pool_section("hang", "egg:caravand#activity", task_list="hang", **hang_keys),
        pool_section("deaf", "egg:caravand#activity", task_list="deaf", **hang_keys),
    )
    master = caravand(ini)
    wait_counts(master.pid, {"hang": 1, "deaf": 1})
    schedule_activity(client, "Hung", "hung-1", "Hang", "hang", str(tmp_path / "hang-started"))
    schedule_activity(client, "Hung", "deaf-1", "HangDeaf", "deaf", str(tmp_path / "deaf-started"))
    hung = int(file_text(tmp_path / "hang-started", message="the Hang activity to start"))
    deaf = int(file_text(tmp_path / "deaf-started", message="the HangDeaf activity to start"))
    assert {hung, deaf} <= set(children_of(master.pid))

    # Their deadline is 2 s after the start, plus heartbeat_grace 1 s: SIGABRT then.
    master.wait_output(f"hung: hang#1 (pid {hung}) working", timeout=10)
    master.wait_output(f"hung: deaf#1 (pid {deaf}) working", timeout=10)
    wait_gone([hung], 5, "the hung child to die of SIGABRT")
    # The one that ignores SIGABRT is SIGKILLed kill_grace (2 s) later.
    master.wait_output(f"killing: deaf#1 (pid {deaf}) with SIGKILL: SIGABRT did not end it", timeout=10)
    wait_gone([deaf], 5, "the deaf child to die of SIGKILL")
    booted(master, "hang#1", count=2, timeout=15)
    booted(master, "deaf#1", count=2, timeout=15)
    replacements = wait_counts(master.pid, {"hang": 1, "deaf": 1})
    assert hung not in replacements["hang"] and deaf not in replacements["deaf"]

    log = master.output()
    assert "SIGABRT" in log.split(f"hung: hang#1 (pid {hung})")[1].splitlines()[0]
    assert f"crashed: hang#1 (pid {hung}, killed by SIGABRT)" in log
    assert f"killing: hang#1 (pid {hung})" not in log  # faulthandler dumped, then the signal killed it
    assert f"crashed: deaf#1 (pid {deaf}, killed by SIGKILL)" in log
    dump = log.split("Fatal Python error: Aborted")[1]
    assert "Current thread" in dump and 'File "' in dump
    assert "hung_activities.py" in dump and "in stuck_forever" in dump, dump
    assert log.count("Fatal Python error: Aborted") == 1  # the deaf child dumped nothing
    assert master.process.poll() is None


# -- graceful stops lose no task


def test_sigterm_while_an_activity_runs_finishes_and_answers_it(caravand, endpoint, client, tmp_path):
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        pool_section("slow", "egg:caravand#activity", domain="Slow", task_list="slow", modules="slow_activities"),
        graceful_timeout=25,
    )
    master = caravand(ini)
    booted(master, "slow#1")
    schedule_activity(client, "Slow", "slow-1", "WaitForRelease", "slow", str(tmp_path))
    worker = int(file_text(tmp_path / "started", message="the activity to start"))
    assert worker in children_of(master.pid)

    sent = time.monotonic()
    master.send(signal.SIGTERM)
    master.wait_output("stopping: master (graceful")
    assert alive(worker) and master.process.poll() is None  # the task in hand holds the stop
    (tmp_path / "release").write_text("go")
    assert master.wait(timeout=25) == 0
    assert time.monotonic() - sent < 25  # within graceful_timeout

    assert activity_outcomes(client, "Slow", "slow-1") == [("ActivityTaskCompleted", "released")]
    log = master.output()
    assert f"exited: slow#1 (pid {worker}, exit code 0)" in log
    assert "stopped: Slow/slow (completed 1" in log
    assert "killing:" not in log


def test_sigterm_with_a_task_past_graceful_timeout_fails_it_and_exits_in_time(caravand, endpoint, client, tmp_path):
    """A task that outlasts graceful_timeout is failed with worker-shutdown (SWF retries it), never dropped."""
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        pool_section("slow", "egg:caravand#activity", domain="Slow", task_list="slow", modules="slow_activities"),
        graceful_timeout=21,  # the least with poll_timeout 1: SIGALRM at 11 s, SIGKILL at 21 s
    )
    master = caravand(ini)
    booted(master, "slow#1")
    schedule_activity(client, "Slow", "slow-2", "WaitForRelease", "slow", str(tmp_path))
    file_text(tmp_path / "started", message="the activity to start")

    sent = time.monotonic()
    master.send(signal.SIGTERM)
    assert master.wait(timeout=30) == 0
    assert time.monotonic() - sent < 21  # the child failed its task at SIGALRM and left before the SIGKILL
    assert activity_outcomes(client, "Slow", "slow-2") == [("ActivityTaskFailed", "worker-shutdown")]
    assert "killing:" not in master.output()  # the child failed its task and left before the SIGKILL


def test_sigterm_during_a_held_poll_answers_the_task_it_brings(caravand, endpoint, client, tmp_path):
    """Real SWF holds a poll up to 60 s: a stop must let it end and answer the task it brings."""
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        pool_section("held", "call:held_poll:factory", domain="Held", task_list="held", signal_dir=str(tmp_path)),
    )
    master = caravand(ini)
    child = int(file_text(tmp_path / "poll-held", 20, message="the held poll to start"))
    assert children_of(master.pid)[child].startswith("caravand: activity held#1 [Held/held] polling")
    # The task SWF will hand over at the end of the held poll.
    schedule_activity(client, "Held", "held-1", "Answer", "held", "-")

    master.send(signal.SIGTERM)
    master.wait_output("stopping: master (graceful")
    assert not (tmp_path / "poll-released").exists()  # the poll is still in flight...
    assert alive(child)  # ...and the child waits for it
    (tmp_path / "release-poll").write_text("now")
    assert master.wait(timeout=20) == 0

    assert activity_outcomes(client, "Held", "held-1") == [("ActivityTaskCompleted", "answered after a held poll")]
    log = master.output()
    assert f"exited: held#1 (pid {child}, exit code 0)" in log
    assert "stopped: Held/held (completed 1" in log


def test_sigquit_stops_idle_children_at_once_and_still_finishes_the_task_in_hand(caravand, endpoint, client, tmp_path):
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        demo_pool("idle", "Quit"),
        pool_section("slow", "egg:caravand#activity", domain="Quit", task_list="slow", modules="slow_activities"),
    )
    master = caravand(ini)
    children = wait_counts(master.pid, {"idle": 1, "slow": 1})
    [idle] = children["idle"]
    schedule_activity(client, "Quit", "quit-1", "WaitForRelease", "slow", str(tmp_path))
    worker = int(file_text(tmp_path / "started", message="the activity to start"))

    master.send(signal.SIGQUIT)
    master.wait_output("stopping: master (fast")
    wait_gone([idle], 3, "the idle decider to leave at once")  # its poll abandoned, not waited for
    assert alive(worker) and master.process.poll() is None
    (tmp_path / "release").write_text("go")
    assert master.wait(timeout=20) == 0
    assert activity_outcomes(client, "Quit", "quit-1") == [("ActivityTaskCompleted", "released")]
    assert f"exited: idle#1 (pid {idle}, exit code 0)" in master.output()


# -- reloads


def test_sighup_adds_removes_and_resizes_pools(caravand, endpoint, client, tmp_path):
    ini = tmp_path / "caravan.ini"
    write_ini(
        ini,
        endpoint,
        demo_pool("keep", "Reload"),
        demo_pool("gone", "Reload", task_list="gone"),
        demo_pool("swap", "Reload", task_list="old"),
    )
    master = caravand(ini)
    before = wait_counts(master.pid, {"keep": 1, "gone": 1, "swap": 1})
    [kept], [removed], [swapped] = before["keep"], before["gone"], before["swap"]

    write_ini(
        ini,
        endpoint,
        demo_pool("keep", "Reload", processes=3),
        demo_pool("added", "Reload", task_list="new"),
        demo_pool("swap", "Reload", task_list="changed"),
    )
    master.send(signal.SIGHUP)
    master.wait_output("reloading: ")
    after = wait_counts(master.pid, {"keep": 3, "added": 1, "swap": 1})
    assert kept in after["keep"]  # resized in place, not replaced
    assert not alive(removed) and not alive(swapped)
    [new_swap] = after["swap"]
    assert "[Reload/changed]" in after["swap"][new_swap]
    master.wait_output(f"exited: gone#1 (pid {removed}, exit code 0)")
    log = master.wait_output("drained: gone")
    assert "resized: keep to 3" in log and "added: added" in log and "replacing: swap" in log
    assert f"retiring: gone#1 (pid {removed}, removed from the ini)" in log
    # A changed pool is replaced new-first: the old child goes once the new one has booted.
    assert log.index(f"booted: swap#1 (pid {new_swap})") < log.index(f"retiring: swap#1 (pid {swapped}")
    assert "crashed:" not in log
    # The added and the changed pools serve their task lists.
    demo_decided(client, "Reload", "on-new", task_list="new")
    demo_decided(client, "Reload", "on-changed", task_list="changed")

    write_ini(
        ini,
        endpoint,
        demo_pool("keep", "Reload", processes=1),
        demo_pool("added", "Reload", task_list="new"),
        demo_pool("swap", "Reload", task_list="changed"),
    )
    master.send(signal.SIGHUP)
    last = wait_counts(master.pid, {"keep": 1, "added": 1, "swap": 1})
    assert list(last["keep"]) == [kept] and list(last["swap"]) == [new_swap]  # unchanged pools stay as they are
    assert master.output().count("reloading: ") == 2 and "resized: added" not in master.output()
    assert master.process.poll() is None


def test_bad_ini_on_sighup_is_refused_and_the_old_pools_serve_on(caravand, endpoint, client, tmp_path):
    ini = tmp_path / "caravan.ini"
    write_ini(ini, endpoint, demo_pool("demo", "Refused", processes=2))
    master = caravand(ini)
    pids = set(wait_counts(master.pid, {"demo": 2})["demo"])

    write_ini(ini, endpoint, demo_pool("demo", "Refused", processes=2, bogus_key="1"))
    master.send(signal.SIGHUP)
    log = master.wait_output("reload refused:")
    refusal = log.split("reload refused:")[1].splitlines()[0]
    assert "[pool:demo] bogus_key: unknown key" in refusal
    assert set(pool_children(master.pid)["demo"]) == pids
    demo_decided(client, "Refused", "after-refusal")
    assert set(pool_children(master.pid)["demo"]) == pids
    assert master.output().count("spawned: ") == 2


# -- a broken pool


def broken_pool(name: str, processes: int, max_restarts: int) -> str:
    return pool_section(
        name,
        "egg:caravand#decider",
        domain="Broken",
        task_list=name,
        modules="boot_failure",  # it passes the start's import check, then fails in each child
        processes=processes,
        backoff_base="0.2",
        max_restarts=max_restarts,
        restart_window=60,
        fatal_retry=600,
    )


def test_pool_failing_at_import_backs_off_then_gives_up_and_others_work(caravand, endpoint, client, tmp_path):
    max_restarts = 3
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        demo_pool("demo", "Broken"),
        broken_pool("broken", processes=1, max_restarts=max_restarts),
        # Two children: one may crash after its sibling's crash made the pool FATAL.
        broken_pool("broken-pair", processes=2, max_restarts=2),
    )
    master = caravand(ini)
    log = master.wait_output("gave up: broken (", timeout=20)
    assert "failed to boot: broken#1: cannot import module 'boot_failure': RuntimeError" in log
    assert "backoff: broken (" in log and log.index("backoff: broken (") < log.index("gave up: broken (")
    assert log.count("spawned: broken#") == max_restarts + 1
    log = master.wait_output("gave up: broken-pair (", timeout=20)
    assert log.count("spawned: broken-pair#") <= 2 + 2

    # The healthy pool is untouched: a Demo runs to completion meanwhile.
    booted(master, "demo#1")
    [demo] = pool_children(master.pid)["demo"]
    demo_decided(client, "Broken", "healthy")
    client.signal_workflow_execution(domain="Broken", workflowId="healthy", signalName="STOP")
    wait_for(
        lambda: "WorkflowExecutionCompleted" in event_types(client, "Broken", "healthy"),
        20,
        message="the Demo to complete",
    )
    assert list(pool_children(master.pid)) == ["demo"] and list(pool_children(master.pid)["demo"]) == [demo]
    log = master.output()
    # FATAL: no more tries within fatal_retry.
    assert log.count("spawned: broken#") == max_restarts + 1 and log.count("spawned: broken-pair#") <= 2 + 2
    assert "crashed: demo" not in log and "Traceback" not in log
    assert master.process.poll() is None


# -- systemd's notify protocol


class NotifySocket:
    """A fake $NOTIFY_SOCKET: collects the datagrams, each with the master's log as it was on arrival."""

    def __init__(self, path: pathlib.Path, log_of):
        self.path = str(path)
        assert len(self.path) < 100, self.path  # sun_path's limit
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.log_of = log_of
        self.received: list[tuple[list[str], str]] = []

    def fields(self) -> list[str]:
        return [field for fields, _ in self.received for field in fields]

    def wait(self, predicate, timeout: float, message: str):
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {message}; got {self.fields()}")
            self.socket.settimeout(remaining)
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            self.received.append((data.decode().split("\n"), self.log_of()))

    def close(self):
        self.socket.close()


def test_ready_only_after_every_child_booted_then_watchdog_and_stopping(caravand, endpoint, tmp_path):
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        demo_pool("a", "Notify", processes=2),
        demo_pool("b", "Notify", task_list="b"),
    )
    master = None
    notify = NotifySocket(tmp_path / "notify.sock", lambda: master.output())
    try:
        master = caravand(ini, env=master_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000"))
        notify.wait(lambda: "READY=1" in notify.fields(), 20, "READY=1")
        [log_at_ready] = [log for fields, log in notify.received if "READY=1" in fields]
        assert log_at_ready.count("spawned: ") == 3
        assert all(f"booted: {label} " in log_at_ready for label in ("a#1", "a#2", "b#1")), log_at_ready
        assert "READY=1" not in notify.received[0][0]
        statuses = [f for f in notify.fields() if f.startswith("STATUS=")]
        assert statuses[0] == "STATUS=a 0/2 starting; b 0/1 starting"
        assert statuses[-1] == "STATUS=a 2/2 starting; b 1/1 starting"  # sent with READY=1

        # WATCHDOG_USEC = 2 s: a ping every second from the healthy loop.
        notify.wait(lambda: notify.fields().count("WATCHDOG=1") >= 3, 5, "three WATCHDOG=1")

        # A reload: RELOADING=1, then READY=1 again once it is applied.
        master.send(signal.SIGHUP)
        notify.wait(lambda: notify.fields().count("READY=1") == 2, 5, "READY=1 after RELOADING=1")
        fields = notify.fields()
        assert fields.index("RELOADING=1") < len(fields) - 1 - fields[::-1].index("READY=1")

        master.send(signal.SIGTERM)
        notify.wait(lambda: "STOPPING=1" in notify.fields(), 5, "STOPPING=1")
        assert master.wait(timeout=20) == 0
        assert notify.fields().count("READY=1") == 2
    finally:
        notify.close()


# -- the children never outlive the master


def test_children_exit_when_the_master_is_sigkilled(caravand, endpoint, tmp_path):
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        demo_pool("a", "Orphans", processes=2),
        pool_section("work", "egg:caravand#activity", domain="Orphans", task_list="slow", modules="slow_activities"),
    )
    master = caravand(ini)
    children = wait_counts(master.pid, {"a": 2, "work": 1})
    pids = [pid for pool in children.values() for pid in pool]

    master.process.kill()
    killed = time.monotonic()
    master.process.wait()
    try:
        wait_gone(pids, 2.5, f"the children {pids} to exit after their master died")
    finally:
        for pid in pids:
            kill_quietly(pid)
    assert time.monotonic() - killed < 2.5


# -- daemon mode and its pidfile


def read_pid(pidfile: pathlib.Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def processes_of(ini: pathlib.Path) -> list[int]:
    """Live pids whose command line or title names ``ini``: a daemon, whether or not it wrote its pidfile."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and str(ini) in title_of(int(entry)) and alive(int(entry)):
            pids.append(int(entry))
    return pids


def stop_daemons(ini: pathlib.Path, pidfile: pathlib.Path) -> None:
    """Teardown: TERM the daemon of the pidfile (and any other running ``ini``) by pid; then SIGKILL what lingers."""
    pids = set(processes_of(ini))
    if (pid := read_pid(pidfile)) is not None and alive(pid) and str(ini) in title_of(pid):
        pids.add(pid)
    children = [child for pid in pids for child in children_of(pid)]
    for pid in pids:
        kill_quietly(pid, signal.SIGTERM)
    try:
        wait_gone([*pids, *children], 10, "the daemon to stop")
    finally:
        for pid in [*pids, *children, *processes_of(ini)]:
            kill_quietly(pid)


def daemon_ini(tmp_path, endpoint) -> pathlib.Path:
    return write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Daemon"))


def run_daemon(ini: pathlib.Path, pidfile: pathlib.Path, log: pathlib.Path) -> subprocess.CompletedProcess:
    """``caravand --daemon --pidfile pidfile --log-file log ini``: returns once the command has exited."""
    options = ["--daemon", "--pidfile", str(pidfile), "--log-file", str(log)]
    return run_cli("caravand", *options, str(ini), env=master_env(), timeout=20)


def test_daemon_detaches_holds_the_pidfile_and_refuses_a_second(endpoint, tmp_path):
    ini, pidfile, log = daemon_ini(tmp_path, endpoint), tmp_path / "p.pid", tmp_path / "d.log"
    try:
        started = time.monotonic()
        done = run_daemon(ini, pidfile, log)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 10
        pid = wait_for(lambda: read_pid(pidfile), 10, message="the daemon's pid in the pidfile")
        wait_for(lambda: title_of(pid) == f"caravand: master [{ini}]", 10, message=f"pid {pid} to be the master")
        wait_for(lambda: "booted: demo#1 " in log.read_text(), 20, message="the daemon's child to boot")
        [child] = wait_counts(pid, {"demo": 1})["demo"]

        second = run_daemon(ini, pidfile, log)
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1 and f"pid {pid})" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert read_pid(pidfile) == pid and alive(pid) and alive(child)

        os.kill(pid, signal.SIGTERM)
        wait_gone([pid, child], 20, "the daemon to stop on SIGTERM")
        assert not pidfile.exists()
        assert f"stopped: master (pid {pid}, exit 0)" in log.read_text()
    finally:
        stop_daemons(ini, pidfile)


def test_daemon_starts_over_a_stale_pidfile(endpoint, tmp_path):
    ini, pidfile, log = daemon_ini(tmp_path, endpoint), tmp_path / "p.pid", tmp_path / "d.log"
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")  # left by a crash: the file, no lock
    try:
        done = run_daemon(ini, pidfile, log)
        assert done.returncode == 0, done.stderr
        pid = wait_for(lambda: read_pid(pidfile) != dead.pid and read_pid(pidfile), 10, message="a new pid")
        wait_for(lambda: title_of(pid) == f"caravand: master [{ini}]", 10, message=f"pid {pid} to be the master")
    finally:
        stop_daemons(ini, pidfile)


@pytest.mark.parametrize("variable", ["NOTIFY_SOCKET", "INVOCATION_ID"])
def test_daemon_is_refused_under_systemd(endpoint, tmp_path, variable):
    ini, pidfile = daemon_ini(tmp_path, endpoint), tmp_path / "p.pid"
    try:
        env = master_env(**{variable: str(tmp_path / "notify.sock") if variable == "NOTIFY_SOCKET" else "abc123"})
        done = run_cli("caravand", "--daemon", "--pidfile", str(pidfile), str(ini), env=env, timeout=20)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "--daemon is refused under systemd" in done.stderr
        assert not pidfile.exists()
    finally:
        stop_daemons(ini, pidfile)


# -- the unit file and --check


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "systemd" / "caravand.service").read_text()
    assert "ExecStart=/usr/local/bin/caravand " in unit
    copy = tmp_path / "caravand.service"
    copy.write_text(unit.replace("ExecStart=/usr/local/bin/caravand ", f"ExecStart={CARAVAND} "))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "caravand.service" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and settings["KillMode"] == "mixed"
    assert settings["RestartPreventExitStatus"] == "78"
    assert float(settings["TimeoutStopSec"]) > 120  # above the default graceful_timeout
    assert int(settings["LimitNOFILE"]) >= 65536  # a pipe per child in the master: 1024 is near


def test_check_prints_the_pools_of_the_local_ini():
    done = run_cli("caravand", "--check", str(ROOT / "etc" / "caravan-local.ini"), env=master_env())
    assert done.returncode == 0, done.stderr
    for pool in ("demo-decider", "greeting-decider", "greeting-activities"):
        assert re.search(rf"^{pool}\s", done.stdout, re.M), done.stdout
    assert "embedded" in done.stdout


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("[caravand]\ngraceful_timout = 3\n", "[caravand] graceful_timout: unknown key"),
        (
            "[caravand]\n\n[pool:x]\nuse = egg:caravand#decider\ntask_list = t\nmodules = caravand.examples.demo\n",
            "[pool:x] domain: missing",
        ),
        (
            "[caravand]\n\n[pool:x]\nuse = egg:caravand#activity\ndomain = D\ntask_list = t\nmodules = no_such_mod\n",
            "[pool:x] modules: no module named 'no_such_mod'",
        ),
    ],
)
def test_check_refuses_a_bad_ini_in_one_line(tmp_path, section, expected):
    ini = tmp_path / "bad.ini"
    ini.write_text(section)
    done = run_cli("caravand", "--check", str(ini), env=master_env())
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


# -- TTIN and TTOU


def test_ttin_then_ttou_change_each_pool_by_one(caravand, endpoint, tmp_path):
    ini = write_ini(
        tmp_path / "caravan.ini",
        endpoint,
        demo_pool("a", "Scale"),
        demo_pool("b", "Scale", task_list="b", processes=2),
    )
    master = caravand(ini)
    first = wait_counts(master.pid, {"a": 1, "b": 2})

    master.send(signal.SIGTTIN)
    more = wait_counts(master.pid, {"a": 2, "b": 3})
    assert set(first["a"]) < set(more["a"]) and set(first["b"]) < set(more["b"])

    master.send(signal.SIGTTOU)
    fewer = wait_counts(master.pid, {"a": 1, "b": 2})
    assert set(fewer["a"]) <= set(more["a"]) and set(fewer["b"]) <= set(more["b"])
    log = master.output()
    assert "scale: a up from 1 to 2 (TTIN)" in log and "scale: b down from 3 to 2 (TTOU)" in log
    assert "crashed:" not in log


# -- recycling, preload, log files


def test_max_tasks_recycles_a_child_with_its_replacement_booted_first(caravand, endpoint, client, tmp_path):
    """After max_tasks tasks a child is replaced; the new one boots before the old one is retired."""
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Recycle", max_tasks=2))
    master = caravand(ini)
    booted(master, "demo#1")
    [(first, _)] = wait_counts(master.pid, {"demo": 1})["demo"].items()
    demo_decided(client, "Recycle", "r1")  # a decision task...
    demo_decided(client, "Recycle", "r2")  # ...and another: max_tasks reached
    wait_for(lambda: f"exited: demo#1 (pid {first}, exit code 0)" in master.output(), 30, message="the old child to go")
    log = master.output()
    recycling = log.index(f"recycling: demo#1 (pid {first}) after 2 tasks")
    replacement_booted = log.index("booted: demo#2 ")
    retired = log.index(f"retiring: demo#1 (pid {first}, replaced)")
    assert recycling < replacement_booted < retired  # capacity never dipped
    assert "crashed:" not in log
    [(second, _)] = wait_counts(master.pid, {"demo": 1})["demo"].items()
    assert second != first
    demo_decided(client, "Recycle", "r3")  # the replacement serves


@pytest.mark.parametrize("preload", ["true", "false"])
def test_preload_imports_the_modules_once_in_the_master(caravand, endpoint, client, tmp_path, preload):
    """With preload the master imports the pool's modules before fork; without it, each child does.

    (Without preload, the pool's registrar, a throwaway process, imports them too: never the master. Before
    anything starts, the start's import check does too, in a throwaway process.)
    """
    probe = tmp_path / "imported-by"
    pool = pool_section("probe", domain="Preload", task_list="default", modules="import_probe", processes=2)
    ini = write_ini(tmp_path / "caravan.ini", endpoint, pool, preload=preload)
    master = caravand(ini, env=master_env(IMPORT_PROBE=str(probe)))
    booted(master, "probe#1")
    booted(master, "probe#2")
    importers = [int(line) for line in probe.read_text().split()]
    children = set(pool_children(master.pid)["probe"])
    check, importers = importers[0], importers[1:]  # the start's import check came first
    assert check != master.pid and check not in children
    if preload == "true":
        assert importers == [master.pid]
    else:
        assert master.pid not in importers and children <= set(importers) and len(importers) == 3
    client.start_workflow_execution(domain="Preload", workflowId="p1", workflowType={"name": "Probe", "version": "1.0"})
    wait_for(lambda: "WorkflowExecutionCompleted" in event_types(client, "Preload", "p1"), 20, message="p1 done")
    assert "preload:" not in master.output()  # no preload error was logged


def file_logging(path: pathlib.Path) -> str:
    """The ini's logging sections for INFO lines of every process into the file ``path``."""
    return f"""
[loggers]
keys = root

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = file

[handler_file]
class = FileHandler
args = ({str(path)!r}, "a")
formatter = plain

[formatter_plain]
format = %(process)d %(message)s
"""


def test_usr1_reopens_log_files_after_they_were_moved(caravand, endpoint, tmp_path):
    """logrotate moves the file, then sends USR1: new lines go to a new file at the old path."""
    log_path = tmp_path / "caravand.log"
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "Rotate"))
    ini.write_text(ini.read_text() + file_logging(log_path))
    master = caravand(ini)
    wait_for(lambda: log_path.exists() and "booted: demo#1" in log_path.read_text(), 20, message="the log file")
    rotated = tmp_path / "caravand.log.1"
    log_path.rename(rotated)
    master.send(signal.SIGUSR1)
    wait_for(
        lambda: log_path.exists() and log_path.read_text().count("reopened log files") == 2,
        10,
        message="the master and its child to write to a new file",
    )
    master.send(signal.SIGTERM)
    assert master.wait(timeout=30) == 0
    assert "stopped: master" in log_path.read_text()
    assert "stopped: master" not in rotated.read_text()
    # The child reopened its copy too: its last words are in the new file.
    assert "stopped: Rotate/default" in log_path.read_text()
    assert "stopped: Rotate/default" not in rotated.read_text()


def test_usr1_reopens_the_daemons_log_file_in_the_master_and_every_child(endpoint, tmp_path):
    """--daemon sends stdout and stderr (fds 1 and 2) to --log-file: after a rename, USR1 points them at a new one."""
    ini = write_ini(tmp_path / "caravan.ini", endpoint, demo_pool("demo", "DaemonRotate", processes=2))
    pidfile, log = tmp_path / "p.pid", tmp_path / "d.log"
    try:
        assert run_daemon(ini, pidfile, log).returncode == 0
        pid = wait_for(lambda: read_pid(pidfile), 10, message="the daemon's pid")
        wait_for(lambda: log.exists() and log.read_text().count("booted: demo#") == 2, 20, message="both booted")
        rotated = tmp_path / "d.log.1"
        log.rename(rotated)
        os.kill(pid, signal.SIGUSR1)
        wait_for(
            lambda: log.exists() and log.read_text().count("reopened log files") == 3,
            10,
            message="the master and its two children to write to a new file",
        )
        children = list(children_of(pid))
        os.kill(pid, signal.SIGTERM)
        wait_gone([pid, *children], 30, "the daemon to stop")
        assert "stopped: master" in log.read_text() and "stopped: master" not in rotated.read_text()
        # The children's last words (written to fd 2 by their logging) are in the new file too.
        assert log.read_text().count("stopped: DaemonRotate/default") == 2
        assert "stopped: DaemonRotate/default" not in rotated.read_text()
    finally:
        stop_daemons(ini, pidfile)


def test_daemon_logs_to_the_inis_log_file_not_into_the_pidfile(endpoint, tmp_path):
    """Logging is set up after detaching: DaemonContext closes the descriptors it was not told to keep."""
    app_log = tmp_path / "app.log"
    ini = daemon_ini(tmp_path, endpoint)
    ini.write_text(ini.read_text() + file_logging(app_log))
    pidfile, log = tmp_path / "p.pid", tmp_path / "d.log"
    try:
        assert run_daemon(ini, pidfile, log).returncode == 0
        pid = wait_for(lambda: read_pid(pidfile), 10, message="the daemon's pid")
        wait_for(lambda: app_log.exists() and "booted: demo#1 " in app_log.read_text(), 20, message="app.log")
        assert pidfile.read_text() == f"{pid}\n"  # the pid, and nothing else
        assert "Logging error" not in log.read_text()
    finally:
        stop_daemons(ini, pidfile)


def test_the_embedded_endpoint_dies_with_a_sigkilled_master(caravand, tmp_path):
    """A master killed outright must not leave its local endpoint holding the port for the next start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ini = tmp_path / "caravan.ini"
    ini.write_text(
        f"[caravand]\nendpoint_url = embedded\nembedded_port = {port}\nregister_domains = true\nmetrics_bind =\n\n"
        + demo_pool("demo", "Orphan")
    )
    master = caravand(ini)
    booted(master, "demo#1")
    endpoints = [pid for pid, title in children_of(master.pid).items() if title.startswith("caravand: endpoint ")]
    assert len(endpoints) == 1
    master.send(signal.SIGKILL)
    wait_gone(endpoints, 10, "the embedded endpoint to follow its master")
    again = caravand(ini)  # the port is free: a new start works at once
    booted(again, "demo#1")


# -- pythonpath: a module beside the ini (issue 12), and modules that do not import (issue 8)


def write_flow_module(directory: pathlib.Path, result: str) -> None:
    """``beside_ini.py`` in ``directory``: a workflow that completes with ``result`` (where it was found)."""
    directory.mkdir(exist_ok=True)
    (directory / "beside_ini.py").write_text(
        "from caravand import Workflow\n\n\n"
        "class BesideIni(Workflow):\n"
        '    name = "BesideIni"\n'
        '    version = "1.0"\n'
        '    default_task_list = "beside"\n'
        '    default_execution_start_to_close_timeout = "600"\n'
        '    default_task_start_to_close_timeout = "10"\n'
        '    default_child_policy = "TERMINATE"\n\n'
        "    def run(self):\n"
        f"        self.task.complete({result!r})\n"
    )


def beside_ini_result(client, workflow_id: str) -> str:
    client.start_workflow_execution(
        domain="Beside", workflowId=workflow_id, workflowType={"name": "BesideIni", "version": "1.0"}
    )
    events = wait_for(
        lambda: [e for e in history(client, "Beside", workflow_id) if e["eventType"] == "WorkflowExecutionCompleted"],
        20,
        message=f"{workflow_id} to complete",
    )
    return events[0]["workflowExecutionCompletedEventAttributes"]["result"]


def test_check_imports_the_modules_and_finds_one_beside_the_ini_through_pythonpath(tmp_path):
    """``caravand --check`` as a real process: a module under the ini's directory, found through pythonpath."""
    write_flow_module(tmp_path / "lib", "lib")
    pool = pool_section("beside", domain="Beside", task_list="beside", modules="beside_ini")
    ini = tmp_path / "caravan.ini"
    ini.write_text("[caravand]\n\n" + pool)
    done = run_cli("caravand", "--check", str(ini), env=master_env())
    assert done.returncode == 78 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert f"{ini}: [pool:beside] modules: no module named 'beside_ini' (searched: " in done.stderr
    assert done.stderr.endswith("): set pythonpath in [caravand] or install the package\n")

    ini.write_text("[caravand]\npythonpath = %(here)s/lib\n\n" + pool)
    done = run_cli("caravand", "--check", str(ini), env=master_env())
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"{ini}: ok\n")

    # A module that is found but fails as it imports is refused too, in one line (it used to pass).
    (tmp_path / "lib" / "beside_ini.py").write_text("raise RuntimeError('not today')\n")
    done = run_cli("caravand", "--check", str(ini), env=master_env())
    assert done.returncode == 78 and "Traceback" not in done.stderr
    assert done.stderr == (
        f"caravand: error: {ini}: [pool:beside] modules: cannot import module 'beside_ini': RuntimeError: not today\n"
    )


def test_a_running_pool_finds_its_module_through_pythonpath_and_a_hup_that_changes_it(
    caravand, endpoint, client, tmp_path
):
    """The children (and the registrar) import from pythonpath; after a HUP, from the new directory."""
    write_flow_module(tmp_path / "lib", "from lib")
    write_flow_module(tmp_path / "lib2", "from lib2")
    pool = pool_section("beside", domain="Beside", task_list="beside", modules="beside_ini")
    ini = write_ini(tmp_path / "caravan.ini", endpoint, pool, pythonpath="%(here)s/lib")
    master = caravand(ini)
    [first] = wait_counts(master.pid, {"beside": 1})["beside"]
    assert beside_ini_result(client, "before") == "from lib"  # registered by the registrar, run by the child

    write_ini(ini, endpoint, pool, pythonpath="%(here)s/lib2")
    master.send(signal.SIGHUP)
    master.wait_output("replacing: beside")
    booted(master, "beside#1", count=2)
    wait_gone([first], 20, "the child of the old pythonpath to retire")
    [second] = wait_counts(master.pid, {"beside": 1})["beside"]
    assert second != first
    assert beside_ini_result(client, "after") == "from lib2"
    assert "crashed:" not in master.output() and "reload refused" not in master.output()


def test_start_refuses_a_pool_module_that_does_not_import(caravand, endpoint, tmp_path):
    """Exit 78 and one line before anything starts, instead of a pool that crash-loops until FATAL."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "beside_ini.py").write_text("def broken(:\n")
    pool = pool_section("beside", domain="Beside", task_list="beside", modules="beside_ini")
    ini = write_ini(tmp_path / "caravan.ini", endpoint, pool, pythonpath="%(here)s/lib")
    master = caravand(ini)
    assert master.wait(timeout=20) == 78
    output = master.output()
    assert output.startswith(f"caravand: error: {ini}: [pool:beside] modules: cannot import module 'beside_ini': ")
    assert "SyntaxError" in output and output.count("\n") == 1 and "spawned:" not in output
