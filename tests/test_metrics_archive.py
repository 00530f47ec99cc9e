"""metrics.archive_dead: dead processes' counter and histogram files folded into one archive, no count lost.

Real processes (forked) write real multiprocess files into a private
directory, as a master's children do; the exposition is read back with the
collector a scrape uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from caravand import metrics

WRITER = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Histogram
    tasks = Counter("caravand_test_tasks", "tasks", ["pool"])
    took = Histogram("caravand_test_seconds", "seconds", ["pool"], buckets=(1, 10))
    for _ in range(int(sys.argv[1])):
        tasks.labels(sys.argv[2]).inc()
        took.labels(sys.argv[2]).observe(float(sys.argv[3]))
    if len(sys.argv) > 4:  # stay alive until told: a live process
        print("ready", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture
def directory(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.ENV, str(tmp_path))
    return tmp_path


def write(directory, count: int, pool: str, seconds: float, *, stay: bool = False):
    """A process that counts ``count`` tasks of ``pool``, each taking ``seconds``; exited unless ``stay``."""
    argv = [sys.executable, "-c", WRITER, str(count), pool, str(seconds)] + (["stay"] if stay else [])
    env = dict(os.environ, **{metrics.ENV: str(directory)})
    if not stay:
        subprocess.run(argv, env=env, check=True)
        return None
    process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def scrape(directory) -> dict[tuple, float]:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def files(directory, kind: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(f"{kind}_") and name.endswith(".db"))


def test_dead_processes_files_fold_into_one_archive_and_every_count_stays(directory):
    write(directory, 3, "a", 0.5)
    write(directory, 4, "a", 5.0)
    write(directory, 2, "b", 20.0)
    live = write(directory, 5, "a", 0.5, stay=True)
    try:
        before = scrape(directory)
        assert len(files(directory, "counter")) == 4
        assert metrics.archive_dead(str(directory)) == 6  # 3 dead processes x (counter + histogram)
        assert files(directory, "counter") == sorted(["counter_archive.db", f"counter_{live.pid}.db"])
        assert files(directory, "histogram") == sorted(["histogram_archive.db", f"histogram_{live.pid}.db"])
        after = scrape(directory)
        assert after == before
        assert after[("caravand_test_tasks_total", (("pool", "a"),))] == 12
        assert after[("caravand_test_seconds_bucket", (("le", "1.0"), ("pool", "a")))] == 8
        assert after[("caravand_test_seconds_bucket", (("le", "10.0"), ("pool", "a")))] == 12
        assert after[("caravand_test_seconds_count", (("pool", "b"),))] == 2
        assert after[("caravand_test_seconds_sum", (("pool", "b"),))] == 40.0
    finally:
        live.stdin.close()
        live.wait()
    write(directory, 1, "b", 0.5)  # the archive grows: it is summed with the next dead
    assert metrics.archive_dead(str(directory)) == 4  # the live one ended too
    again = scrape(directory)
    assert again[("caravand_test_tasks_total", (("pool", "a"),))] == 12
    assert again[("caravand_test_tasks_total", (("pool", "b"),))] == 3
    assert files(directory, "counter") == ["counter_archive.db"]
    assert metrics.archive_dead(str(directory)) == 0


def test_the_app_archives_at_most_once_an_interval_and_answers_the_same(directory):
    write(directory, 2, "a", 0.5)
    now = [100.0]
    app = metrics.make_app(clock=lambda: now[0])

    def get() -> bytes:
        return b"".join(app({"PATH_INFO": metrics.PATH, "REQUEST_METHOD": "GET"}, lambda status, headers: None))

    first = get()
    assert files(directory, "counter") == ["counter_archive.db"]
    write(directory, 1, "a", 0.5)
    assert get() != first  # read from the new process's file: not archived yet
    assert len(files(directory, "counter")) == 2
    now[0] += metrics.ARCHIVE_INTERVAL
    get()
    assert files(directory, "counter") == ["counter_archive.db"]
    assert b'caravand_test_tasks_total{pool="a"} 3.0' in get()
