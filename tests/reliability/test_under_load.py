"""The reliability suite: caravand under load, while children are killed, stopped, reloaded, cut off, doubled.

Each test runs real ``caravand`` processes against a moto server on
127.0.0.1 and a burst of ``Relay`` workflows (workloads/relay_workflow.py:
two ``Leg`` activities in sequence, each retried until it passes; the
activity heartbeats with a 3 s timeout, which the emulator enforces). What
is asserted is what an operator needs: every workflow completes, and where
nothing was killed, no task timed out (a timed-out task is one a child had
received and dropped).

``CARAVAND_RELIABILITY_WORKFLOWS`` sets the burst (default 200, the
issue's figure; CI runs the default).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time

import pytest
from helpers import wait_for
from helpers import write_master_ini as write_ini
from test_master_e2e import (  # noqa: F401 - fixtures
    TITLE,
    booted,
    caravand,
    children_of,
    client,
    kill_quietly,
    master_env,
    pool_section,
)
from test_metrics_e2e import free_port, scrape, total

from caravand import swf
from caravand.embedded import EmbeddedEndpoint

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

WORKFLOWS = int(os.environ.get("CARAVAND_RELIABILITY_WORKFLOWS", "200"))
DOMAIN = "Reliability"
#: Events that say a task a worker had received was dropped.
TIMED_OUT = ("ActivityTaskTimedOut", "DecisionTaskTimedOut")


def relay_pools(deciders: int = 2, workers: int = 3, **worker_keys) -> list[str]:
    return [
        pool_section("relay", domain=DOMAIN, task_list="relay", modules="relay_workflow", processes=deciders),
        pool_section(
            "legs",
            use="egg:caravand#activity",
            domain=DOMAIN,
            task_list="relay-legs",
            modules="relay_activities",
            processes=workers,
            **worker_keys,
        ),
    ]


def start_relays(api, count: int, prefix: str = "relay") -> list[str]:
    ids = [f"{prefix}-{number}" for number in range(count)]
    for workflow_id in ids:
        api.start_workflow_execution(
            domain=DOMAIN, workflowId=workflow_id, workflowType={"name": "Relay", "version": "1.0"}, input=workflow_id
        )
    return ids


def closed(api) -> dict[str, str]:
    """{workflow id: close status} of every closed execution of the domain."""
    found: dict[str, str] = {}
    token = None
    while True:
        page = api.list_closed_workflow_executions(
            domain=DOMAIN, startTimeFilter={"oldestDate": 0}, **({"nextPageToken": token} if token else {})
        )
        found.update({info["execution"]["workflowId"]: info["closeStatus"] for info in page["executionInfos"]})
        token = page.get("nextPageToken")
        if not token:
            return found


def wait_completed(api, ids: list[str], timeout: float) -> None:
    def done():
        statuses = closed(api)
        failed = {i: s for i, s in statuses.items() if s != "COMPLETED" and i in ids}
        assert not failed, f"workflows closed without completing: {failed}; the first: {last_events(api, min(failed))}"
        return all(i in statuses for i in ids)

    wait_for(done, timeout, interval=0.5, message=f"{len(ids)} workflows completed")


def last_events(api, workflow_id: str, count: int = 12) -> list:
    """The end of a closed execution's history, with the attributes that say why (for a failure's message)."""
    run = api.list_closed_workflow_executions(
        domain=DOMAIN, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id}
    )["executionInfos"][0]["execution"]
    events = api.get_workflow_execution_history(domain=DOMAIN, execution=run)["events"]
    return [{k: v for k, v in e.items() if k not in ("eventTimestamp",)} for e in events[-count:]]


def completed_count(api) -> int:
    return sum(status == "COMPLETED" for status in closed(api).values())


def timeouts(api, ids: list[str]) -> dict[str, list[str]]:
    """{workflow id: its timed-out task events}, for those that have any."""
    found = {}
    for workflow_id in ids:
        run = api.list_closed_workflow_executions(
            domain=DOMAIN, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id}
        )["executionInfos"][0]["execution"]
        events = [e["eventType"] for e in api.get_workflow_execution_history(domain=DOMAIN, execution=run)["events"]]
        bad = [e for e in events if e in TIMED_OUT]
        if bad:
            found[workflow_id] = bad
    return found


def pool_children(master_pid: int) -> dict[int, str]:
    """The master's pool children (not its helpers) that have booted: {pid: title}."""
    return {
        pid: title
        for pid, title in children_of(master_pid).items()
        if (match := TITLE.match(title)) and match["state"] != "booting"
    }


def healthy(master, port: int) -> None:
    """The master runs, no pool gave up, and every pool is RUNNING as its metrics say."""
    assert master.process.poll() is None, master.output()
    assert "gave up:" not in master.output()
    samples = scrape(port)
    for pool in ("relay", "legs"):
        assert total(samples, "caravand_pool_state", pool=pool, state="fatal") == 0
        wait_for(lambda p=pool: total(scrape(port), "caravand_pool_state", pool=p, state="running") == 1, 30,
                 message=f"{pool} RUNNING")  # fmt: skip


def a_fifth_completed(api) -> None:
    """Wait until a fifth of the burst completed: the work is under way, and most of it still to do."""
    wait_for(lambda: completed_count(api) >= WORKFLOWS // 5, 120, interval=0.2, message="a fifth completed")


def under_way(caravand, endpoint, api, tmp_path):
    """A caravand of relay_pools() with its workers booted and a fifth of the burst done: (ini, master, ids)."""
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *relay_pools())
    master = caravand(ini)
    booted(master, "legs#3")
    ids = start_relays(api, WORKFLOWS)
    a_fifth_completed(api)
    return ini, master, ids


def stop(master, timeout: float) -> None:
    master.send(signal.SIGTERM)
    assert master.wait(timeout) == 0, master.output()


# -- 1. chaos


def test_chaos_every_workflow_completes_while_a_random_child_is_killed_every_second(
    caravand, endpoint, client, tmp_path
):
    port = free_port()
    ini = write_ini(tmp_path / "caravan.ini", endpoint, *relay_pools(), metrics_bind=f"127.0.0.1:{port}")
    master = caravand(ini)
    booted(master, "relay#2")
    booted(master, "legs#3")
    ids = start_relays(client, WORKFLOWS)
    kills: list[str] = []
    done = threading.Event()

    def chaos():
        chooser = random.Random(7)
        while not done.wait(1.0):
            victims = pool_children(master.pid)
            if victims:
                pid = chooser.choice(sorted(victims))
                kills.append(victims[pid])
                kill_quietly(pid)

    killer = threading.Thread(target=chaos, daemon=True)
    killer.start()
    try:
        wait_completed(client, ids, 240)
    finally:
        done.set()
        killer.join()
    assert len(kills) >= 5, "the chaos must have lasted"
    assert any(" working" in title for title in kills) or len(kills) >= 20
    healthy(master, port)
    stop(master, 40)


# -- 2. stop under load


def test_a_stop_under_load_drops_no_task_and_a_restart_finishes_the_work(caravand, endpoint, client, tmp_path):
    ini, master, ids = under_way(caravand, endpoint, client, tmp_path)
    began = time.monotonic()
    stop(master, 40)  # graceful_timeout 25, and the poll's read margin
    assert time.monotonic() - began < 25 + 5, "within graceful_timeout"
    assert "killing:" not in master.output() and "SIGALRM" not in master.output()  # drained, nothing cut
    left = WORKFLOWS - completed_count(client)
    assert left > 0, "stopped mid-run"
    again = caravand(ini)
    booted(again, "legs#3")
    wait_completed(client, ids, 180)
    assert timeouts(client, ids) == {}
    stop(again, 40)


# -- 3. reload under load


def test_a_reload_under_load_resizes_and_replaces_pools_and_drops_no_task(caravand, endpoint, client, tmp_path):
    ini, master, ids = under_way(caravand, endpoint, client, tmp_path)
    # The deciders resized (same work), the workers changed (max_tasks: replaced, new first).
    write_ini(tmp_path / "caravan.ini", endpoint, *relay_pools(deciders=3, workers=3, max_tasks=500))
    master.send(signal.SIGHUP)
    master.wait_output("reloaded:")
    assert completed_count(client) < WORKFLOWS, "reloaded mid-run"
    wait_completed(client, ids, 180)
    output = master.output()
    assert "resized: relay to 3" in output and "replacing: legs" in output and "drained: legs" in output
    assert timeouts(client, ids) == {}
    stop(master, 40)


# -- 4. endpoint outage


OUTAGE = 20.0


def test_an_endpoint_outage_backs_children_off_and_polling_resumes_within_seconds(caravand, client, tmp_path):
    port = free_port()
    outside = EmbeddedEndpoint(port=free_port(), poll_hold=1)  # as the session's: the inis' poll_timeout
    url = outside.start()
    try:
        ini = write_ini(tmp_path / "caravan.ini", outside, *relay_pools(), metrics_bind=f"127.0.0.1:{port}")
        master = caravand(ini)
        booted(master, "relay#2")
        booted(master, "legs#3")
        children = len(pool_children(master.pid))
        outside.stop()
        cut = time.monotonic()
        errors_before = total(scrape(port), "caravand_polls_total", result="error")
        # The outage is the scenario, not a guess: it lasts OUTAGE seconds, through which the master lives.
        with pytest.raises(subprocess.TimeoutExpired):
            master.process.wait(OUTAGE - (time.monotonic() - cut))
        samples = scrape(port)
        errors = total(samples, "caravand_polls_total", result="error") - errors_before
        assert errors >= children, (
            f"every child noticed: {errors} errors, {children} children:\n{master.output()[-3000:]}"
        )
        assert errors <= children * OUTAGE * 1.2, f"{errors} failed polls: no backoff"
        assert total(samples, "caravand_pool_state", state="fatal") == 0 and "gave up:" not in master.output()
        # The endpoint comes back on its port (SWF keeps its domains: so do we, by registering it again).
        outside = EmbeddedEndpoint(port=int(url.rsplit(":", 1)[1]), poll_hold=1)
        outside.start()
        swf.make_client(swf.Endpoint(endpoint_url=url, region="us-east-1")).register_domain(
            name=DOMAIN, workflowExecutionRetentionPeriodInDays="1"
        )
        back = time.monotonic()
        # A poll that reached the endpoint is held there (1 s): what the endpoint holds says who polls again,
        # the moment they do (a completed empty poll would come a hold later).
        lists = {f"{DOMAIN}/decision/relay", f"{DOMAIN}/activity/relay-legs"}
        seen: set[str] = set()

        def every_pool_polls() -> bool:
            seen.update(outside.held_polls())
            return lists <= seen

        wait_for(every_pool_polls, 10, interval=0.05, message=f"polls held on {sorted(lists)} (seen {seen})")
        assert time.monotonic() - back <= 5.0, "polling resumed within 5 s of the endpoint's return"
        assert master.process.poll() is None
        stop(master, 40)
    finally:
        outside.stop()


# -- 5. two hosts, one SWF


def test_two_masters_share_the_work_and_one_stopping_loses_nothing(caravand, endpoint, client, tmp_path):
    first_dir, second_dir = tmp_path / "host-a", tmp_path / "host-b"
    first_dir.mkdir()
    second_dir.mkdir()
    masters, ports = [], []
    for directory in (first_dir, second_dir):
        ports.append(free_port())
        ini = write_ini(directory / "caravan.ini", endpoint, *relay_pools(deciders=1, workers=2),
                        pidfile=str(directory / "caravand.pid"), metrics_bind=f"127.0.0.1:{ports[-1]}")  # fmt: skip
        masters.append(caravand(ini, env=master_env(RUNTIME_DIRECTORY=str(directory))))
    for master in masters:
        booted(master, "legs#2")
    ids = start_relays(client, WORKFLOWS)
    a_fifth_completed(client)
    for port in ports:  # SWF shares the work between the hosts' pollers
        assert total(scrape(port), "caravand_tasks_total", pool="legs", outcome="completed") > 0
    stop(masters[0], 40)
    assert completed_count(client) < WORKFLOWS, "stopped mid-run"
    wait_completed(client, ids, 180)
    assert timeouts(client, ids) == {}
    assert masters[1].process.poll() is None
    stop(masters[1], 40)
