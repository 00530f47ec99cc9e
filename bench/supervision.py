"""Supervision: restart latency, a hung child's kill, the master's idle CPU, memory per child, start-up.

    .venv/bin/python bench/supervision.py [--only restart,hung,cpu,memory,startup] [--quick]

Each part runs ``caravand`` (a real process, an ini in a temporary
directory, ``preload = true``, metrics on a free port) against a fresh moto
server that holds empty polls for benchkit.POLL_HOLD seconds, and reads the
master's log, stamped with time.time() to the microsecond (PRECISE_LOGGING),
and /proc:

restart
    4 children of one decider pool; SIGKILL the oldest, 30 times, each one
    up longer than ``min_uptime`` (lowered to 1 s here, so that 30 kills take
    about 20 s: a child killed sooner would be a failed start, and back off):
    the time from the kill to the master's ``booted:`` line of the
    replacement. Median and p95 (target: median <= 20 ms).
hung
    an activity (bench_hang) that sleeps forever with a 2 s start-to-close
    timeout, which its child declares as its deadline; ``heartbeat_grace``
    is 1 s and ``kill_grace`` 1 s: the time from the deadline to the child's
    death (SIGABRT and its stack dump; SIGKILL if that does not end it),
    3 times, the worst reported (target <= 2 s past the deadline).
cpu, memory, startup
    one pool of 64, then 256, idle children (polling an empty task list):
    from the launch of ``caravand`` to the last child's ``booted:`` line
    (target for 256: <= 5 s); the unique memory (Private_Clean +
    Private_Dirty of smaps_rollup) of each child (median; target <= 8 MB)
    and of the master; the master's own CPU over 30 s, as % of one core
    (targets: 64 children <= 0.5 %, 256 <= 2 %).

``--quick`` is a smoke run (5 kills, 1 hang, 16 children over 5 s). The
last line holds the figures as ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import signal
import statistics
import sys
import tempfile
import time

import bench_hang
import benchkit

PARTS = ("restart", "hung", "cpu", "memory", "startup")
FLEET_PARTS = {"cpu", "memory", "startup"}
DOMAIN = "caravand-bench-supervision"
IDLE_TASK_LIST = "bench-idle"
BOOTED = re.compile(r"^booted: (?P<label>\S+) \(pid (?P<pid>\d+)\)")
HUNG = re.compile(r"^hung: (?P<label>\S+) \(pid (?P<pid>\d+)\)")
#: The workflow type whose decider the benchmark plays, to schedule the hanging activity.
HARNESS = {"name": "HangHarness", "version": "1.0"}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def master_settings(endpoint, **overrides: str) -> dict[str, str]:
    return {
        "endpoint_url": endpoint.url,
        "region": benchkit.REGION,
        "register_domains": "false",  # the benchmark registers it before the start: no poll races it
        "poll_timeout": f"{benchkit.POLL_HOLD:g}",
        "graceful_timeout": f"{max(30.0, benchkit.POLL_HOLD + 25):g}",  # a held poll, its margin, a task
        "metrics_bind": f"127.0.0.1:{benchkit.free_port()}",
        "preload": "true",
        "pythonpath": str(benchkit.BENCH_DIR),
        **overrides,
    }


def register_domain(endpoint) -> None:
    benchkit.swf_client(endpoint.url).register_domain(name=DOMAIN, workflowExecutionRetentionPeriodInDays="1")


def idle_pool(processes: int, **keys: str) -> dict[str, str]:
    """A decider pool polling a task list nobody writes to (bench_workflow's types; no execution is started)."""
    return {
        "use": "egg:caravand#decider",
        "domain": DOMAIN,
        "task_list": IDLE_TASK_LIST,
        "modules": "bench_workflow",
        "processes": str(processes),
        **keys,
    }


def start_master(workdir: pathlib.Path, master: dict, pools: dict) -> tuple[benchkit.Caravand, benchkit.LogReader]:
    ini = benchkit.master_ini(workdir, master, pools, extra=benchkit.PRECISE_LOGGING)
    log_path = workdir / "caravand.log"
    return benchkit.Caravand(ini, log_path), benchkit.LogReader(log_path)


def wait_booted(master: benchkit.Caravand, log: benchkit.LogReader, count: int, timeout: float) -> dict[int, float]:
    """Wait until ``count`` children booted; {pid: time of its ``booted:`` line}."""
    booted: dict[int, float] = {}

    def all_booted():
        if master.process.poll() is not None:
            raise RuntimeError(f"caravand exited ({master.process.returncode}):\n{master.output()[-3000:]}")
        for line in log.new():
            found = BOOTED.match(line["message"])
            if found:
                booted[int(found["pid"])] = float(line["time"])
        return len(booted) >= count

    try:
        benchkit.wait_for(all_booted, timeout, f"{count} children booted", interval=0.02)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; caravand's log ends with:\n{master.output()[-3000:]}") from None
    return booted


# -- restart latency


def bench_restart(workdir: pathlib.Path, kills: int) -> dict[str, float]:
    min_uptime = 1.0
    with benchkit.fresh_endpoint() as endpoint:
        register_domain(endpoint)
        master, log = start_master(
            workdir,
            master_settings(endpoint),
            {"bench-restart": idle_pool(4, min_uptime=f"{min_uptime:g}", register="false")},
        )
        try:
            booted = wait_booted(master, log, 4, timeout=60)
            latencies, killed = [], []
            for _ in range(kills):
                oldest = min(booted, key=booted.get)
                # Up well past min_uptime (a sooner death is a failed start), and the master idle since the last.
                time.sleep(max(0.5, booted[oldest] + min_uptime + 0.2 - time.time()))
                killed_at = time.time()
                os.kill(oldest, signal.SIGKILL)
                killed.append((oldest, killed_at))
                del booted[oldest]
                replacement = wait_booted(master, log, 1, timeout=30)
                booted.update(replacement)
                latencies.append(1000 * (min(replacement.values()) - killed_at))
        finally:
            master.stop(endpoint)
    print(f"restart: {kills} SIGKILLs, kill to BOOTED: median {statistics.median(latencies):.1f} ms, "
          f"p95 {percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms", flush=True)  # fmt: skip
    reaped, spawned = restart_phases(master.output(), killed)
    print(f"restart: medians: kill to the master's crashed: line {statistics.median(reaped):.1f} ms, "
          f"to spawned: {statistics.median(spawned):.1f} ms; the rest is the child's boot", flush=True)  # fmt: skip
    return {
        "restart_median_ms": statistics.median(latencies),
        "restart_p95_ms": percentile(latencies, 0.95),
    }


def restart_phases(output: str, killed: list[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """Where the time goes: for each kill, ms to the master's ``crashed:`` line, and to its next ``spawned:``."""
    lines = [line for line in map(benchkit.PRECISE_LINE.match, output.splitlines()) if line]
    reaped, spawned = [], []
    for pid, killed_at in killed:
        found = [
            i
            for i, line in enumerate(lines)
            if line["message"].startswith("crashed: ") and f"(pid {pid}," in line["message"]
        ]
        if not found:
            continue
        reaped.append(1000 * (float(lines[found[0]]["time"]) - killed_at))
        after = [line for line in lines[found[0] :] if line["message"].startswith("spawned: ")]
        if after:
            spawned.append(1000 * (float(after[0]["time"]) - killed_at))
    return reaped or [math.nan], spawned or [math.nan]


# -- a hung child


def register_hang(client) -> None:
    hang = bench_hang.HangForever
    client.register_workflow_type(
        domain=DOMAIN,
        **HARNESS,
        defaultTaskList={"name": "bench-harness"},
        defaultExecutionStartToCloseTimeout="600",
        defaultTaskStartToCloseTimeout="30",
        defaultChildPolicy="TERMINATE",
    )
    client.register_activity_type(
        domain=DOMAIN,
        name=hang.name,
        version=hang.version,
        defaultTaskList={"name": hang.default_task_list},
        defaultTaskScheduleToStartTimeout=hang.default_task_schedule_to_start_timeout,
        defaultTaskStartToCloseTimeout=hang.default_task_start_to_close_timeout,
        defaultTaskScheduleToCloseTimeout=hang.default_task_schedule_to_close_timeout,
        defaultTaskHeartbeatTimeout=hang.default_task_heartbeat_timeout,
    )


def schedule_hang(client, workflow_id: str, marker: pathlib.Path) -> None:
    """Start a HangHarness execution and, as its decider, schedule one HangForever task.

    Each execution has a decision task list of its own: a former one's
    decision tasks (its activity timed out) must not be taken for this one's.
    """
    task_list = {"name": f"bench-harness-{workflow_id}"}
    client.start_workflow_execution(domain=DOMAIN, workflowId=workflow_id, workflowType=HARNESS, taskList=task_list)
    task = benchkit.wait_for(
        lambda: client.poll_for_decision_task(domain=DOMAIN, taskList=task_list).get("taskToken"),
        timeout=30,
        message="the harness's decision task",
    )
    hang = bench_hang.HangForever
    attributes = {
        "activityType": {"name": hang.name, "version": hang.version},
        "activityId": "hang",
        "input": str(marker),
    }
    client.respond_decision_task_completed(
        taskToken=task,
        decisions=[{"decisionType": "ScheduleActivityTask", "scheduleActivityTaskDecisionAttributes": attributes}],
    )


def wait_replaced(master: benchkit.Caravand, log: benchkit.LogReader, pid: int) -> float | None:
    """Read the log until a child other than ``pid`` boots; the time of the ``hung:`` line of ``pid``, if any."""
    aborted_at: float | None = None

    def replaced() -> bool:
        nonlocal aborted_at
        if master.process.poll() is not None:
            raise RuntimeError(f"caravand exited ({master.process.returncode}):\n{master.output()[-3000:]}")
        for line in log.new():
            hung, booted = HUNG.match(line["message"]), BOOTED.match(line["message"])
            if hung and int(hung["pid"]) == pid:
                aborted_at = float(line["time"])
            if booted and int(booted["pid"]) != pid:
                return True
        return False

    benchkit.wait_for(replaced, 30, f"the replacement of hung child {pid}", interval=0.02)
    return aborted_at


def bench_hung(workdir: pathlib.Path, trials: int) -> dict[str, float]:
    with benchkit.fresh_endpoint() as endpoint:
        register_domain(endpoint)
        client = benchkit.swf_client(endpoint.url)
        register_hang(client)
        pool = {
            "use": "egg:caravand#activity",
            "domain": DOMAIN,
            "task_list": bench_hang.HangForever.default_task_list,
            "modules": "bench_hang",
            "register": "false",
            "heartbeat_grace": "1",
            "kill_grace": "1",
            "min_uptime": "1",
        }
        master, log = start_master(workdir, master_settings(endpoint), {"hang": pool})
        late_kills, late_aborts = [], []
        try:
            wait_booted(master, log, 1, timeout=60)
            for trial in range(trials):
                marker = workdir / f"hang-{trial}"
                schedule_hang(client, f"hang-{trial}", marker)
                text = benchkit.wait_for(lambda m=marker: m.exists() and m.read_text(), 30, "the activity to start")
                pid_text, started_text = text.split()
                pid, deadline = int(pid_text), float(started_text) + bench_hang.DEADLINE_SECONDS
                benchkit.wait_for(lambda p=pid: not benchkit.alive(p), 30, f"hung child {pid} to die", interval=0.005)
                late_kills.append(time.time() - deadline)
                aborted_at = wait_replaced(master, log, pid)
                if aborted_at is not None:
                    late_aborts.append(aborted_at - deadline)
        finally:
            master.stop(endpoint)
    print(f"hung: {trials} x an activity past its {bench_hang.DEADLINE_SECONDS} s deadline "
          f"(heartbeat_grace 1 s): SIGABRT {max(late_aborts, default=float('nan')):.2f} s, "
          f"dead {max(late_kills):.2f} s after the deadline (worst)", flush=True)  # fmt: skip
    return {"hung_killed_after_deadline_s": max(late_kills)}


# -- a fleet of idle children: start-up, memory, the master's CPU


def bench_fleet(workdir: pathlib.Path, count: int, window: float, parts: set[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    with benchkit.fresh_endpoint() as endpoint:
        register_domain(endpoint)
        settings = master_settings(endpoint, max_processes=str(max(count, 256)))
        master, log = start_master(workdir, settings, {"bench-idle": idle_pool(count)})
        try:
            booted = wait_booted(master, log, count, timeout=120)
            startup = max(booted.values()) - master.launched_at
            if "startup" in parts:
                figures[f"startup_{count}_s"] = startup
                print(f"startup: {count} children all BOOTED {startup:.2f} s after caravand was launched", flush=True)
            time.sleep(3.0)  # the registrar is done, and every child is in its held poll
            if "memory" in parts:
                child_mb = [benchkit.unique_memory_mb(pid) for pid in booted if benchkit.alive(pid)]
                master_mb = benchkit.unique_memory_mb(master.pid)
                figures[f"child_uss_{count}_mb"] = statistics.median(child_mb)
                figures[f"master_uss_{count}_mb"] = master_mb
                print(f"memory: {count} children, unique (Private_Clean + Private_Dirty): median "
                      f"{statistics.median(child_mb):.1f} MB, max {max(child_mb):.1f} MB; "
                      f"master {master_mb:.1f} MB", flush=True)  # fmt: skip
            if "cpu" in parts:
                before, started = benchkit.cpu_seconds(master.pid, reaped=False), time.monotonic()
                time.sleep(window)
                used = benchkit.cpu_seconds(master.pid, reaped=False) - before
                percent = 100 * used / (time.monotonic() - started)
                figures[f"master_cpu_{count}_pct"] = percent
                print(f"cpu: master with {count} idle children: {percent:.2f} % of a core over {window:g} s "
                      f"(polls held {benchkit.POLL_HOLD:g} s)", flush=True)  # fmt: skip
        finally:
            master.stop(endpoint, timeout=60)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts (default: all of {','.join(PARTS)})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer kills, fewer children, shorter windows"
    )
    parser.add_argument(
        "--poll-hold",
        type=float,
        default=benchkit.POLL_HOLD,
        metavar="SECONDS",
        help=f"how long the endpoint holds an empty poll (default {benchkit.POLL_HOLD:g}; SWF: 60)",
    )
    args = parser.parse_args(argv)
    benchkit.POLL_HOLD = args.poll_hold  # the endpoint's hold and caravand's poll_timeout
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = parts - set(PARTS)
    if unknown or not parts:
        parser.error(f"--only takes some of {','.join(PARTS)} (not {','.join(sorted(unknown)) or 'nothing'})")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="caravand-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        for part in ("restart", "hung", "fleet-16", "fleet-64", "fleet-256"):
            (workdir / part).mkdir()
        if "restart" in parts:
            figures.update(bench_restart(workdir / "restart", kills=5 if args.quick else 30))
        if "hung" in parts:
            figures.update(bench_hung(workdir / "hung", trials=1 if args.quick else 3))
        if parts & FLEET_PARTS:
            for count in (16,) if args.quick else (64, 256):
                figures.update(bench_fleet(workdir / f"fleet-{count}", count, 5.0 if args.quick else 30.0, parts))
    print(" ".join(f"{key}={value:.2f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
