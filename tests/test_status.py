"""``caravanctl status``: the running master's metrics endpoint as a table of pools, or JSON.

The unit tests serve a canned exposition (what a master with a decider pool
and an activity pool serves) from a tiny HTTP server on 127.0.0.1; the end
to end test asks a real caravand on the session's moto server.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from helpers import run_cli, wait_for, write_ini
from helpers import write_master_ini as write_master
from test_master_e2e import (  # noqa: F401 - fixtures
    booted,
    caravand,
    client,
    master_env,
)
from test_metrics_e2e import free_port, greeting_pools, start_greetings

from caravand import ctl

EXPOSITION = """\
# HELP caravand_tasks_total Tasks handled
# TYPE caravand_tasks_total counter
caravand_tasks_total{domain="D",kind="decision",outcome="completed",pool="greeter",task_list="g",type="Greeting",version="1.0"} 21.0
caravand_tasks_total{domain="D",kind="decision",outcome="workflow-failed",pool="greeter",task_list="g",type="Greeting",version="1.0"} 2.0
caravand_tasks_total{domain="D",kind="activity",outcome="completed",pool="workers",task_list="a",type="Normalize",version="1"} 14.0
caravand_tasks_total{domain="D",kind="activity",outcome="failed",pool="workers",task_list="a",type="Normalize",version="1"} 1.0
caravand_tasks_total{domain="D",kind="activity",outcome="stale",pool="workers",task_list="a",type="Normalize",version="1"} 1.0
caravand_tasks_total{domain="D",kind="activity",outcome="canceled",pool="workers",task_list="a",type="Normalize",version="1"} 5.0
# HELP caravand_children Children by pool and state
# TYPE caravand_children gauge
caravand_children{pool="greeter",state="polling"} 1.0
caravand_children{pool="workers",state="polling"} 2.0
caravand_children{pool="workers",state="working"} 1.0
caravand_children{pool="workers",state="booting"} 1.0
# HELP caravand_pool_target_children Children the pool is to have
# TYPE caravand_pool_target_children gauge
caravand_pool_target_children{pool="greeter"} 1.0
caravand_pool_target_children{pool="workers"} 4.0
# HELP caravand_pool_min_children The fewest children
# TYPE caravand_pool_min_children gauge
caravand_pool_min_children{pool="greeter"} 1.0
caravand_pool_min_children{pool="workers"} 2.0
# HELP caravand_pool_max_children The most children
# TYPE caravand_pool_max_children gauge
caravand_pool_max_children{pool="greeter"} 1.0
caravand_pool_max_children{pool="workers"} 8.0
# HELP caravand_pool_backlog Tasks waiting
# TYPE caravand_pool_backlog gauge
caravand_pool_backlog{pool="greeter"} NaN
caravand_pool_backlog{pool="workers"} 17.0
# HELP caravand_child_restarts_total Children that ended
# TYPE caravand_child_restarts_total counter
caravand_child_restarts_total{pool="greeter",reason="crash"} 1.0
caravand_child_restarts_total{pool="greeter",reason="hung"} 0.0
caravand_child_restarts_total{pool="workers",reason="crash"} 0.0
caravand_child_restarts_total{pool="workers",reason="recycle"} 2.0
# HELP caravand_pool_state 1 for the state the pool is in
# TYPE caravand_pool_state gauge
caravand_pool_state{pool="greeter",state="running"} 1.0
caravand_pool_state{pool="greeter",state="fatal"} 0.0
caravand_pool_state{pool="workers",state="running"} 0.0
caravand_pool_state{pool="workers",state="backoff"} 1.0
# HELP caravand_oldest_heartbeat_age_seconds Seconds since the pool's quietest child last said anything
# TYPE caravand_oldest_heartbeat_age_seconds gauge
caravand_oldest_heartbeat_age_seconds{pool="greeter"} 0.4
caravand_oldest_heartbeat_age_seconds{pool="workers"} 12.6
# HELP caravand_last_reload_success_timestamp_seconds Unix time of the last configuration applied
# TYPE caravand_last_reload_success_timestamp_seconds gauge
caravand_last_reload_success_timestamp_seconds 1.7e+09
"""


class Endpoint:
    """A tiny metrics endpoint on 127.0.0.1: serves ``text`` at /metrics (a list: one a request, the last repeated)."""

    def __init__(self, texts: list[str]):
        self.texts = list(texts)
        self.requests = 0
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                text = endpoint.texts[min(endpoint.requests, len(endpoint.texts) - 1)]
                endpoint.requests += 1
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    started = []

    def start(*texts: str) -> Endpoint:
        started.append(Endpoint(list(texts)))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.close()


@pytest.fixture
def cli(capsys):
    def run(*argv: str):
        capsys.readouterr()
        code = ctl.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ini_with(tmp_path, bind: str) -> str:
    return write_ini(tmp_path, f"[caravand]\nendpoint_url = http://127.0.0.1:9\nmetrics_bind = {bind}\n")


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_the_table_has_a_row_per_pool_from_the_ini_s_metrics_bind(serve, cli, tmp_path):
    endpoint = serve(EXPOSITION)
    code, out, err = cli("-c", ini_with(tmp_path, f"127.0.0.1:{endpoint.port}"), "status")
    assert (code, err) == (0, "")
    header, greeter, workers = rows(out.replace("FAIL RATE", "FAIL-RATE"))
    assert header == [
        "POOL", "STATE", "TARGET", "SCALE", "BACKLOG", "BOOTING", "IDLE", "POLLING", "PAGING", "WORKING",
        "COMPLETED", "RATE", "FAILED", "FAIL-RATE", "RESTARTS", "HEARTBEAT",
    ]  # fmt: skip
    assert greeter == ["greeter", "running", "1", "-", "-", "0", "0", "1", "0", "0", "21", "-", "2", "-", "1", "0s"]
    # stale and failed are failures, canceled is not; restarts of every reason add up
    assert workers == [
        "workers",
        "backoff",
        "4",
        "2..8",
        "17",
        "1",
        "0",
        "2",
        "0",
        "1",
        "14",
        "-",
        "2",
        "-",
        "2",
        "13s",
    ]


def test_json_carries_the_same_figures(serve, cli):
    endpoint = serve(EXPOSITION)
    code, out, err = cli("status", "--url", endpoint.url, "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["url"] == endpoint.url and data["interval"] is None
    greeter, workers = data["pools"]
    assert greeter == {
        "pool": "greeter",
        "state": "running",
        "target": 1,
        "children": {"booting": 0, "idle": 0, "polling": 1, "paging": 0, "working": 0},
        "completed": 21,
        "failed": 2,
        "completed_per_second": None,
        "failed_per_second": None,
        "restarts": 1,
        "oldest_heartbeat_age": 0.4,
        "backlog": None,  # NaN: not counted
        "min": 1,
        "max": 1,
    }
    assert workers["state"] == "backoff" and workers["children"]["working"] == 1 and workers["failed"] == 2
    assert (workers["backlog"], workers["min"], workers["max"]) == (17, 2, 8)


def test_watch_shows_rates_over_the_last_interval(serve, cli, monkeypatch):
    later = EXPOSITION.replace(
        'pool="greeter",task_list="g",type="Greeting",version="1.0"} 21.0',
        'pool="greeter",task_list="g",type="Greeting",version="1.0"} 31.0',
    )
    endpoint = serve(EXPOSITION, later)
    clock = iter([100.0, 102.0])
    monkeypatch.setattr(ctl.time, "monotonic", lambda: next(clock))
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(ctl.time, "sleep", sleep)
    code, out, err = cli("status", "--url", endpoint.url, "--watch", "--json")
    assert (code, err, sleeps) == (0, "", [2.0, 2.0])
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["pools"][0]["completed_per_second"] is None
    assert second["interval"] == 2.0
    assert second["pools"][0]["completed"] == 31 and second["pools"][0]["completed_per_second"] == 5.0
    assert second["pools"][1]["completed_per_second"] == 0.0


def test_watch_prints_plain_tables_when_stdout_is_no_tty(serve, cli, monkeypatch):
    endpoint = serve(EXPOSITION)
    monkeypatch.setattr(ctl.time, "sleep", lambda seconds: (_ for _ in ()).throw(KeyboardInterrupt))
    code, out, _ = cli("status", "--url", endpoint.url, "--watch", "0.5")
    assert code == 0 and "\x1b" not in out
    assert out.splitlines()[0].startswith(endpoint.url) and "greeter" in out


def test_watch_clears_the_screen_on_a_tty(serve, cli, monkeypatch):
    endpoint = serve(EXPOSITION)
    monkeypatch.setattr(ctl.sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(ctl.time, "sleep", lambda seconds: (_ for _ in ()).throw(KeyboardInterrupt))
    code, out, _ = cli("status", "--url", endpoint.url, "--watch")
    assert code == 0 and out.startswith("\x1b[H\x1b[2J")


def test_nothing_listening_is_one_line_and_exit_1(cli, tmp_path):
    code, out, err = cli("-c", ini_with(tmp_path, "127.0.0.1:9"), "status")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "http://127.0.0.1:9/metrics" in err and "caravand does not run there" in err


def test_another_server_is_not_caravand(serve, cli):
    endpoint = serve(EXPOSITION)
    code, _, err = cli("status", "--url", endpoint.url.replace("/metrics", "/other"))
    assert code == 1 and "HTTP 404" in err and err.count("\n") == 1


def test_metrics_off_is_exit_78(cli, tmp_path):
    code, _, err = cli("-c", ini_with(tmp_path, ""), "status")
    assert code == 78 and "metrics are off" in err and err.count("\n") == 1


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_watch_interval_is_a_usage_error(cli, value):
    code, _, err = cli("status", "--url", "http://127.0.0.1:9/metrics", f"--watch={value}")
    assert code == 2 and "not an interval" in err


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1:9469", "http://127.0.0.1:9469/metrics"),
        ("0.0.0.0:9469", "http://127.0.0.1:9469/metrics"),
        ("[::]:9469", "http://[::1]:9469/metrics"),
        ("[::1]:9000", "http://[::1]:9000/metrics"),
        ("metrics.local:80", "http://metrics.local:80/metrics"),
    ],
)
def test_metrics_url_of_metrics_bind(bind, url):
    assert ctl.metrics_url(bind) == url


# -- end to end: a real caravand on the session's moto server


@pytest.mark.e2e
def test_status_of_a_running_caravand(caravand, endpoint, client, tmp_path):  # noqa: F811 - fixtures
    port = free_port()
    ini = write_master(tmp_path / "caravan.ini", endpoint, *greeting_pools(), metrics_bind=f"127.0.0.1:{port}")
    master = caravand(ini, env=master_env())
    booted(master, "greeter#1")
    booted(master, "workers#2")
    master.wait_output(f"metrics: http://127.0.0.1:{port}/metrics")

    def status() -> dict:
        done = run_cli("caravanctl", "-c", str(ini), "status", "--json", timeout=30)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        data = json.loads(done.stdout)
        return {pool["pool"]: pool for pool in data["pools"]}

    pools = wait_for(
        lambda: (
            (pools := status())
            and all(p["state"] == "running" and sum(p["children"].values()) == p["target"] for p in pools.values())
            and pools
        ),
        20,
        interval=0.2,
        message="every pool running, every child counted by state",
    )
    assert sorted(pools) == ["greeter", "workers"]
    assert {name: (p["state"], p["target"]) for name, p in pools.items()} == {
        "greeter": ("running", 1),
        "workers": ("running", 2),
    }
    assert set(pools["workers"]["children"]) == {"booting", "idle", "polling", "paging", "working"}
    assert all(p["restarts"] == 0 and p["failed"] == 0 for p in pools.values())
    assert all(0 <= p["oldest_heartbeat_age"] < 10 for p in pools.values())

    start_greetings(client, 1, 2)  # a Greeting: 3 decision tasks and 2 activity tasks
    pools = wait_for(
        lambda: (
            (pools := status()) and pools["greeter"]["completed"] >= 6 and pools["workers"]["completed"] >= 4 and pools
        ),
        60,
        interval=0.3,
        message="2 Greetings' tasks counted",
    )
    assert (pools["greeter"]["completed"], pools["workers"]["completed"]) == (6, 4)

    table = run_cli("caravanctl", "-c", str(ini), "status", timeout=30)
    assert table.returncode == 0 and table.stdout.startswith("POOL ")
    assert [line.split()[:2] for line in table.stdout.splitlines()[1:]] == [
        ["greeter", "running"],
        ["workers", "running"],
    ]
