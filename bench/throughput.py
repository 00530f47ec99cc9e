"""Throughput and client CPU per workflow: caravand against a bare boto3 loop, side by side in one run.

    .venv/bin/python bench/throughput.py [--workflows N] [--processes P] [--rounds R]

Runs N one-activity workflows (bench_types: BenchFlow schedules BenchEcho,
then completes with its result) twice, each time on a fresh moto server:

1. through ``caravand`` (a real process, an ini in a temporary directory):
   a decider pool and an activity pool of P processes each, metrics on;
2. through bare_loop.py: P decider and P activity processes of plain boto3.

The benchmark registers the domain and types itself, waits until every
poller is up, then starts the N workflows from its own process (not
counted) and waits for them to close. It reports, for each run:

- workflows/s: N over the time from the first start to the last close (the
  endpoint's close timestamps; both clocks are this machine's);
- client CPU ms per workflow: user + system CPU of the client process tree
  (caravand's master, children and helpers; or the bare processes), the
  moto server excluded, read from /proc just before the first start and
  just after the last close is seen (see benchkit), over N. Start-up and
  stop are left out: they are paid once per deploy, not per workflow.

The last line is ``throughput_ratio=R cpu_ratio=C`` (caravand / bare), over
R rounds (default 2) run in ABBA order (caravand, bare, bare, caravand...),
so that a drift of the machine's load favours neither side.

Why P = 2 by default: the box has 2 cores and the moto server, one Python
process, is the bottleneck and takes about one of them. Two pollers per
kind keep it busy (one can work while the other waits on the server); more
only add processes fighting for the second core.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import bench_types
import benchkit


def start_workflows(client, count: int) -> float:
    """Start ``count`` BenchFlow executions; return the time of the first start."""
    first = time.time()
    for number in range(count):
        client.start_workflow_execution(
            domain=bench_types.DOMAIN,
            workflowId=f"bench-{number}",
            workflowType={"name": bench_types.WORKFLOW["name"], "version": bench_types.WORKFLOW["version"]},
            input=str(number),
        )
    return first


def closed_executions(client) -> list[dict]:
    infos, token = [], None
    while True:
        page = client.list_closed_workflow_executions(
            domain=bench_types.DOMAIN, startTimeFilter={"oldestDate": 0}, **({"nextPageToken": token} if token else {})
        )
        infos += page["executionInfos"]
        token = page.get("nextPageToken")
        if not token:
            return infos


def measure(client, roots: list[int], count: int) -> dict:
    """Start ``count`` workflows, wait until all closed; wall time, client CPU, and the check that all completed."""
    cpu_before = benchkit.tree_cpu_seconds(roots)
    first_start = start_workflows(client, count)

    def all_closed() -> list[dict] | None:
        infos = closed_executions(client)
        return infos if len(infos) >= count else None

    # Every 0.5 s: a list scans every execution on the single-threaded server, which is the bottleneck.
    closed = benchkit.wait_for(
        all_closed,
        timeout=60 + count,
        message=f"{count} closed executions",
        interval=0.5,
    )
    cpu_after = benchkit.tree_cpu_seconds(roots)
    statuses = {info["closeStatus"] for info in closed}
    if len(closed) != count or statuses != {"COMPLETED"}:
        raise RuntimeError(f"expected {count} COMPLETED executions, got {len(closed)}: {sorted(statuses)}")
    last_close = max(info["closeTimestamp"] for info in closed)
    if isinstance(last_close, datetime.datetime):
        last_close = last_close.timestamp()
    wall = last_close - first_start
    return {
        "wall_s": wall,
        "workflows_per_s": count / wall,
        "cpu_ms_per_workflow": 1000 * (cpu_after - cpu_before) / count,
    }


def run_caravand(workflows: int, processes: int, workdir: pathlib.Path) -> dict:
    with benchkit.fresh_endpoint() as endpoint:
        client = benchkit.swf_client(endpoint.url)
        bench_types.register(client)
        common = {"domain": bench_types.DOMAIN, "processes": str(processes), "register": "false"}
        ini = benchkit.master_ini(
            workdir,
            {
                "endpoint_url": endpoint.url,
                "region": benchkit.REGION,
                "poll_timeout": f"{benchkit.POLL_HOLD:g}",
                "graceful_timeout": "30",
                "metrics_bind": f"127.0.0.1:{benchkit.free_port()}",
                "preload": "true",
                "pythonpath": str(benchkit.BENCH_DIR),
            },
            {
                "bench-decider": {"use": "egg:caravand#decider", "task_list": bench_types.DECISION_TASK_LIST,
                                  "modules": "bench_workflow", **common},
                "bench-activities": {"use": "egg:caravand#activity", "task_list": bench_types.ACTIVITY_TASK_LIST,
                                     "modules": "bench_activities", **common},
            },
        )  # fmt: skip
        master = benchkit.Caravand(ini, workdir / "caravand.log")
        try:
            master.wait_output("booted: ", count=2 * processes)
            master.wait_output("metrics: http://")  # its helper is up: no start-up left in the window
            time.sleep(1.0)
            return measure(client, [master.pid], workflows)
        finally:
            master.stop(endpoint)


def run_bare(workflows: int, processes: int) -> dict:
    with benchkit.fresh_endpoint() as endpoint:
        client = benchkit.swf_client(endpoint.url)
        bench_types.register(client)
        command = [sys.executable, str(benchkit.BENCH_DIR / "bare_loop.py")]
        loops: list[subprocess.Popen] = []
        try:
            for role in ["decider"] * processes + ["activity"] * processes:
                loops.append(
                    subprocess.Popen(
                        [*command, role, endpoint.url, f"{benchkit.POLL_HOLD:g}"],
                        stdout=subprocess.PIPE,
                        stdin=subprocess.DEVNULL,
                        env=benchkit.environment(),
                        text=True,
                        preexec_fn=benchkit.die_with_us(signal.SIGKILL),
                    )
                )
            for loop in loops:
                assert loop.stdout is not None
                if loop.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"bare loop pid {loop.pid} died before it was ready")
            time.sleep(1.0)  # as for caravand: every poller in its first poll
            return measure(client, [loop.pid for loop in loops], workflows)
        finally:
            for loop in loops:  # our own children, by PID; they hold nothing worth a graceful stop
                loop.kill()
                loop.wait()
                if loop.stdout:
                    loop.stdout.close()


def report(label: str, figures: dict) -> None:
    print(
        f"{label:9} {figures['workflows_per_s']:7.2f} workflows/s  ({figures['wall_s']:.2f} s)  "
        f"{figures['cpu_ms_per_workflow']:6.2f} CPU ms/workflow",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=300, help="workflows per run (default 300)")
    parser.add_argument("--processes", type=int, default=2, help="processes per pool, and per bare role (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds of both runs, in the order caravand, bare, then bare, caravand... (default 2)",
    )
    args = parser.parse_args(argv)
    if args.workflows < 1 or args.processes < 1 or args.rounds < 1:
        parser.error("--workflows, --processes and --rounds must be at least 1")
    print(f"{args.workflows} workflows, {args.processes} decider + {args.processes} activity processes, "
          f"poll hold {benchkit.POLL_HOLD:g} s, {args.rounds} round(s)", flush=True)  # fmt: skip
    runs: dict[str, list[dict]] = {"caravand": [], "bare": []}
    # ABBA order: a machine whose load drifts during the run favours neither side.
    for round_number in range(args.rounds):
        order = ("caravand", "bare") if round_number % 2 == 0 else ("bare", "caravand")
        for label in order:
            if label == "caravand":
                with tempfile.TemporaryDirectory(prefix="caravand-bench-") as workdir:
                    figures = run_caravand(args.workflows, args.processes, pathlib.Path(workdir))
            else:
                figures = run_bare(args.workflows, args.processes)
            runs[label].append(figures)
            report(label, figures)
    # Over all rounds: the work done over the time it took, and the CPU it cost.
    total = {
        label: {
            "workflows_per_s": len(figures) * args.workflows / sum(f["wall_s"] for f in figures),
            "cpu_ms_per_workflow": sum(f["cpu_ms_per_workflow"] for f in figures) / len(figures),
        }
        for label, figures in runs.items()
    }
    throughput_ratio = total["caravand"]["workflows_per_s"] / total["bare"]["workflows_per_s"]
    cpu_ratio = total["caravand"]["cpu_ms_per_workflow"] / total["bare"]["cpu_ms_per_workflow"]
    print(f"throughput_ratio={throughput_ratio:.2f} cpu_ratio={cpu_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
