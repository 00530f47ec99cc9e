"""The benchmarks still run: a tiny throughput run and a quick restart run, as a user would start them.

No figure is asserted (timing belongs to bench/RESULTS.md, not to a test
on a shared machine): only that each script exits 0 and ends with its
``key=value`` line. Each script starts its own moto server and caravand,
and stops them by PID.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
NUMBER = r"\d+\.\d\d"


def run_bench(*argv: str) -> str:
    """Run ``python bench/ARGV...``; its last line, once it exited 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def test_throughput_runs():
    last = run_bench("throughput.py", "--workflows", "5", "--processes", "1", "--rounds", "1")
    assert re.fullmatch(rf"throughput_ratio={NUMBER} cpu_ratio={NUMBER}", last), last


def test_supervision_runs():
    last = run_bench("supervision.py", "--quick", "--only", "restart")
    assert re.fullmatch(rf"restart_median_ms={NUMBER} restart_p95_ms={NUMBER}", last), last
