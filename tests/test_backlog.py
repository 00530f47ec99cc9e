"""The backlog counter (caravand.backlog) on a fake clock and a fake client, ``count`` on moto, and BACKLOG lines."""

from __future__ import annotations

import os

import pytest
from helpers import FakeClock

from caravand import protocol, swf
from caravand.backlog import BEAT_INTERVAL, BacklogProcess, Target, count

ORDERS = Target("orders", "decider", "Shop", "order-decisions", 5.0)
BILLING = Target("billing", "activity", "Shop", "billing-work", 30.0)


class Stop(Exception):
    """Ends a loop that would run forever: raised by the fake sleep past the test's horizon."""


class FakeClient:
    """Answers CountPending*Tasks: ``counts[task_list]`` (3 if unset), or raises ``failures[n]`` on the n-th call
    (from 0), or ``broken[task_list]`` on each call for that task list.

    ``slow[n]``: the n-th call (from 0) takes that many fake seconds.
    """

    def __init__(self, clock: FakeClock, counts=None, failures=None, slow=None, broken=None):
        self.clock = clock
        self.broken = broken or {}
        self.counts = counts or {}
        self.failures = failures or {}
        self.slow = slow or {}
        self.calls: list[tuple[float, str, str, str]] = []  # (when it began, operation, domain, task list)

    def call(self, operation: str, domain: str, taskList: dict) -> dict:  # noqa: N803 - boto3's name
        index = len(self.calls)
        self.calls.append((self.clock(), operation, domain, taskList["name"]))
        self.clock.advance(self.slow.get(index, 0.0))
        if index in self.failures:
            raise self.failures[index]
        if taskList["name"] in self.broken:
            raise self.broken[taskList["name"]]
        return {"count": self.counts.get(taskList["name"], 3), "truncated": False}

    def count_pending_decision_tasks(self, **kwargs) -> dict:
        return self.call("decision", **kwargs)

    def count_pending_activity_tasks(self, **kwargs) -> dict:
        return self.call("activity", **kwargs)

    def times(self, task_list: str) -> list[float]:
        """When each count of ``task_list`` began, in seconds from the start."""
        return [when - START for when, _, _, name in self.calls if name == task_list]


START = 1000.0  # FakeClock's


class Run:
    """A counter writing to a real pipe; each line read back with the fake time at which it was read."""

    def __init__(self, targets, client=None, horizon: float = 60.0, **client_args):
        self.clock = FakeClock(START)
        self.client = client or FakeClient(self.clock, **client_args)
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.read_end, False)
        self.lines: list[tuple[float, bytes]] = []
        self.sleeps: list[float] = []
        self.horizon = horizon
        self.process = BacklogProcess(
            targets, None, self.write_end, os.getpid(), clock=self.clock, sleep=self.sleep, client=self.client
        )

    def drain(self) -> None:
        data = b""
        while True:
            try:
                chunk = os.read(self.read_end, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        assert data == b"" or data.endswith(b"\n")
        now = self.clock() - START
        self.lines.extend((now, line) for line in data.splitlines())

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.drain()
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        if self.clock() - START > self.horizon:
            raise Stop

    def loop(self, passes: int | None = None) -> Run:
        try:
            self.process.loop(passes)
        except Stop:
            pass
        self.drain()
        return self

    def close(self) -> None:
        for fd in (self.read_end, self.write_end):
            try:
                os.close(fd)
            except OSError:
                pass

    def backlog(self, pool: str) -> list[tuple[float, bytes]]:
        return [
            (when, line) for when, line in self.lines if line.startswith(b"BACKLOG ") and line.endswith(pool.encode())
        ]

    def beats(self) -> list[float]:
        return [when for when, line in self.lines if line == b"BEAT"]


@pytest.fixture
def runs():
    made: list[Run] = []

    def make(*args, **kwargs) -> Run:
        run = Run(*args, **kwargs)
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


# -- when each target is counted


def test_each_target_counted_once_per_its_own_interval(runs):
    run = runs([ORDERS, BILLING], horizon=60.0).loop()
    assert run.client.times("order-decisions") == [5.0 * n for n in range(13)]  # 0, 5 ... 60
    assert run.client.times("billing-work") == [0.0, 30.0, 60.0]
    assert len(run.client.calls) == 16
    assert run.backlog("orders") == [(5.0 * n, b"BACKLOG 3 orders") for n in range(13)]
    assert run.backlog("billing") == [
        (0.0, b"BACKLOG 3 billing"),
        (30.0, b"BACKLOG 3 billing"),
        (60.0, b"BACKLOG 3 billing"),
    ]


def test_each_kind_is_counted_by_its_own_operation_on_its_own_task_list(runs):
    run = runs([ORDERS, BILLING], horizon=0.0).loop()
    assert sorted(call[1:] for call in run.client.calls) == [
        ("activity", "Shop", "billing-work"),
        ("decision", "Shop", "order-decisions"),
    ]


def test_the_first_count_comes_at_once(runs):
    slow = Target("slow", "decider", "Shop", "rare", 3600.0)
    run = runs([slow, BILLING], horizon=0.0).loop(passes=1)
    assert run.client.times("rare") == [0.0] and run.client.times("billing-work") == [0.0]
    assert [line for _, line in run.lines] in (
        [b"BACKLOG 3 slow", b"BACKLOG 3 billing", b"BEAT"],
        [b"BACKLOG 3 billing", b"BACKLOG 3 slow", b"BEAT"],
    )


def test_the_counts_are_the_answers(runs):
    run = runs([ORDERS, BILLING], horizon=0.0, counts={"order-decisions": 0, "billing-work": 1000}).loop()
    assert {line for _, line in run.lines} == {b"BACKLOG 0 orders", b"BACKLOG 1000 billing", b"BEAT"}


@pytest.mark.parametrize(
    "error",
    [
        swf.SWFError("CountPendingDecisionTasks", "ThrottlingException", "Rate exceeded", 400),
        swf.SWFError("CountPendingDecisionTasks", "ReadTimeoutError", "read timed out"),
        swf.CaravanError("no such domain"),
    ],
    ids=["throttled", "timeout", "caravan-error"],
)
def test_a_failed_count_says_dash_and_the_loop_goes_on(runs, error):
    run = runs([ORDERS], horizon=15.0, failures={1: error, 2: error}).loop()
    assert run.backlog("orders") == [
        (0.0, b"BACKLOG 3 orders"),
        (5.0, b"BACKLOG - orders"),
        (10.0, b"BACKLOG - orders"),
        (15.0, b"BACKLOG 3 orders"),
    ]
    assert run.client.times("order-decisions") == [0.0, 5.0, 10.0, 15.0]  # no sooner, no later after a failure


def test_a_failure_of_one_target_does_not_touch_another(runs):
    throttled = swf.SWFError("CountPendingActivityTasks", "ThrottlingException", "Rate exceeded", 400)
    run = runs([ORDERS, BILLING], horizon=10.0, counts={"order-decisions": 7}, broken={"billing-work": throttled})
    run.loop()
    assert run.backlog("orders") == [
        (0.0, b"BACKLOG 7 orders"),
        (5.0, b"BACKLOG 7 orders"),
        (10.0, b"BACKLOG 7 orders"),
    ]
    assert run.backlog("billing") == [(0.0, b"BACKLOG - billing")]


def test_an_unknown_kind_says_dash(runs):
    odd = Target("odd", "workflow", "Shop", "x", 5.0)
    run = runs([odd, ORDERS], horizon=0.0).loop()
    assert {line for _, line in run.lines} == {b"BACKLOG - odd", b"BACKLOG 3 orders", b"BEAT"}
    assert [call[3] for call in run.client.calls] == ["order-decisions"]


def test_beats_at_least_every_beat_interval(runs):
    rare = Target("rare", "decider", "Shop", "rare", 60.0)
    run = runs([rare, BILLING], horizon=130.0).loop()
    beats = run.beats()
    assert beats[0] == 0.0 and beats[-1] >= 130.0 - BEAT_INTERVAL
    assert all(0 < later - earlier <= BEAT_INTERVAL for earlier, later in zip(beats, beats[1:], strict=False))
    assert max(run.sleeps) <= BEAT_INTERVAL
    assert run.client.times("rare") == [0.0, 60.0, 120.0]  # the beats do not move the counts
    assert run.client.times("billing-work") == [0.0, 30.0, 60.0, 90.0, 120.0]


def test_it_sleeps_until_the_next_count_when_that_is_sooner_than_a_beat(runs):
    fast = Target("fast", "decider", "Shop", "fast", 2.0)
    run = runs([fast], horizon=10.0).loop()
    assert run.sleeps == [2.0] * 6
    assert run.client.times("fast") == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_no_catch_up_burst_after_a_slow_call(runs):
    run = runs([ORDERS], horizon=60.0, slow={1: 17.0}).loop()  # the count at 5 s takes 17 s (retries)
    times = run.client.times("order-decisions")
    assert times[:2] == [0.0, 5.0]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(gap >= ORDERS.interval for gap in gaps), times  # never twice within an interval
    assert all(gap <= ORDERS.interval + 17.0 for gap in gaps), times
    assert times[-1] >= 60.0 - ORDERS.interval  # and it went on at its pace
    assert len(times) <= 1 + 60.0 / ORDERS.interval


def test_a_slow_count_of_one_target_does_not_make_another_burst(runs):
    """Orders' first count takes 40 s: billing's first is then late (at 40 s, due at 0); its next is not at once."""
    run = runs([ORDERS, BILLING], horizon=90.0, slow={0: 40.0})
    run.loop()
    assert run.client.calls[0][3] == "order-decisions" and run.client.times("billing-work")[0] == 40.0
    for target in (ORDERS, BILLING):
        times = run.client.times(target.task_list)
        assert all(later - earlier >= target.interval for earlier, later in zip(times, times[1:], strict=False)), (
            target.pool,
            times,
        )


def test_a_gone_master_does_not_end_the_loop(runs):
    run = runs([ORDERS], horizon=1000.0)
    os.close(run.read_end)  # writes now fail with EPIPE (Python ignores SIGPIPE)
    run.read_end = os.open(os.devnull, os.O_RDONLY)
    run.process.loop(passes=3)  # no BrokenPipeError
    assert run.client.times("order-decisions") == [0.0, 5.0, 10.0]


def test_target_of_a_pool_spec():
    class Spec:
        name, kind, domain, task_list, backlog_interval = "orders", "decider", "Shop", "order-decisions", 5.0

    assert Target.of(Spec) == ORDERS


# -- count() itself


def test_count_takes_a_truncated_answer_as_it_is():
    class Truncated:
        def count_pending_activity_tasks(self, **kwargs):
            return {"count": 1000, "truncated": True}

    assert count(Truncated(), BILLING) == 1000


def test_count_refuses_a_kind_with_no_backlog():
    with pytest.raises(swf.CaravanError, match="odd: a pool of kind 'workflow' has no backlog"):
        count(object(), Target("odd", "workflow", "Shop", "x", 5.0))


DOMAIN = "BacklogTest"


@pytest.fixture
def moto_domain(swf_client):
    swf_client.register_domain(name=DOMAIN, workflowExecutionRetentionPeriodInDays="1")
    swf_client.register_workflow_type(
        domain=DOMAIN,
        name="Order",
        version="1",
        defaultTaskList={"name": "order-decisions"},
        defaultExecutionStartToCloseTimeout="3600",
        defaultTaskStartToCloseTimeout="60",
        defaultChildPolicy="TERMINATE",
    )
    swf_client.register_activity_type(
        domain=DOMAIN,
        name="Bill",
        version="1",
        defaultTaskList={"name": "billing-work"},
        defaultTaskStartToCloseTimeout="60",
        defaultTaskScheduleToStartTimeout="60",
        defaultTaskScheduleToCloseTimeout="120",
        defaultTaskHeartbeatTimeout="60",
    )
    return swf_client


def start_orders(client, n: int, task_list: str = "order-decisions") -> None:
    for i in range(n):
        client.start_workflow_execution(
            domain=DOMAIN, workflowId=f"order-{task_list}-{i}", workflowType={"name": "Order", "version": "1"},
            taskList={"name": task_list},
        )  # fmt: skip


def test_count_on_moto(moto_domain):
    client = moto_domain
    orders = Target("orders", "decider", DOMAIN, "order-decisions", 5.0)
    billing = Target("billing", "activity", DOMAIN, "billing-work", 5.0)
    assert count(client, orders) == 0
    start_orders(client, 3)
    start_orders(client, 2, "elsewhere")
    assert count(client, orders) == 3
    assert count(client, Target("other", "decider", DOMAIN, "elsewhere", 5.0)) == 2
    assert count(client, billing) == 0

    task = client.poll_for_decision_task(domain=DOMAIN, taskList={"name": "order-decisions"})
    client.respond_decision_task_completed(
        taskToken=task["taskToken"],
        decisions=[
            {
                "decisionType": "ScheduleActivityTask",
                "scheduleActivityTaskDecisionAttributes": {
                    "activityType": {"name": "Bill", "version": "1"},
                    "activityId": f"bill-{i}",
                },
            }
            for i in range(2)
        ],
    )
    assert count(client, orders) == 2  # one decision taken
    assert count(client, billing) == 2  # the two activities it scheduled


def test_counter_on_moto(moto_domain, runs):
    start_orders(moto_domain, 4)
    orders = Target("orders", "decider", DOMAIN, "order-decisions", 5.0)
    missing = Target("lost", "decider", "NoSuchDomain", "order-decisions", 5.0)
    run = runs([orders, missing], client=swf.BoundedClient(swf.Clients(swf.Endpoint(region="us-east-1")), 10.0))
    run.horizon = 0.0
    run.loop()
    assert {line for _, line in run.lines} == {b"BACKLOG 4 orders", b"BACKLOG - lost", b"BEAT"}


# -- BACKLOG on the wire


@pytest.mark.parametrize(
    ("pool", "number", "line"),
    [
        ("orders", 12, b"BACKLOG 12 orders\n"),
        ("orders", 0, b"BACKLOG 0 orders\n"),
        ("orders", None, b"BACKLOG - orders\n"),
        ("my orders", 1000, b"BACKLOG 1000 my orders\n"),
        ("a b c", None, b"BACKLOG - a b c\n"),
        ("-", 3, b"BACKLOG 3 -\n"),
    ],
)
def test_backlog_round_trip(pool, number, line):
    assert protocol.backlog(pool, number) == line
    message = protocol.decode(line.rstrip(b"\n"))
    assert message == protocol.Message(protocol.BACKLOG, text=pool, count=number)
    assert not message.garbled


def test_a_backlog_line_is_one_line_whatever_the_name():
    line = protocol.backlog("evil\nBEAT\nDONE x", 1)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert protocol.decode(line.rstrip(b"\n")).word == protocol.BACKLOG


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"BACKLOG", ""),
        (b"BACKLOG 5", ""),
        (b"BACKLOG -", ""),
        (b"BACKLOG five orders", "orders"),
        (b"BACKLOG -3 orders", "orders"),
        (b"BACKLOG +3 orders", "orders"),
        (b"BACKLOG 1.5 orders", "orders"),
        (b"BACKLOG 1e3 orders", "orders"),
        (b"BACKLOG \xff orders", "orders"),
        (b"BACKLOG \xc2\xb2 orders", "orders"),  # a superscript two: isdigit() says yes, int() says no
    ],
)
def test_garbled_backlog_lines(line, text):
    message = protocol.decode(line)
    assert message == protocol.Message(protocol.BACKLOG, text=text, garbled=True)
