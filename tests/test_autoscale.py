"""Autoscaling (caravand.autoscale) on a fake clock, and ``processes = MIN..MAX`` with its settings in the ini."""

from __future__ import annotations

import types

import pytest
from helpers import FakeClock, write_ini

from caravand import config
from caravand.autoscale import Autoscaler, Step
from caravand.swf import ConfigError

# MIN 2, MAX 10; grow while the backlog is above 5 per child for 30 s; shrink after 300 s spare; 60 s between steps.
SPEC = {
    "processes": 2,
    "scale_max": 10,
    "scale_up_backlog": 5.0,
    "scale_up_after": 30.0,
    "scale_down_after": 300.0,
    "scale_cooldown": 60.0,
}


def make_spec(**changes) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{**SPEC, **changes})


@pytest.fixture
def clock():
    return FakeClock()


def make(clock, **changes) -> Autoscaler:
    return Autoscaler(make_spec(**changes), clock)


def up(scaler: Autoscaler, target: int) -> Step:
    step = scaler.decide(target)
    assert step is not None and step.direction == "up" and step.reason == "backlog", step
    return step


def down(scaler: Autoscaler, target: int) -> Step:
    step = scaler.decide(target)
    assert step is not None and step.direction == "down" and step.reason == "idle", step
    return step


# -- up: the backlog per child stays above scale_up_backlog for scale_up_after


def test_nothing_to_decide_before_any_count(clock):
    scaler = make(clock)
    assert scaler.decide(2) is None
    clock.advance(10_000)
    assert scaler.decide(2) is None


def test_no_step_up_before_scale_up_after_then_one(clock):
    scaler = make(clock)
    scaler.counted(40, 2)  # 20 per child, above 5
    assert scaler.decide(2) is None
    clock.advance(29.9)
    assert scaler.decide(2) is None
    clock.advance(0.1)
    step = up(scaler, 2)
    assert step.target == 8  # ceil(40 / 5)
    assert "backlog 40" in step.detail and "30 s" in step.detail


def test_the_pressure_runs_from_the_first_count_above_not_the_last(clock):
    scaler = make(clock)
    scaler.counted(40, 2)
    clock.advance(15)
    scaler.counted(45, 2)  # still above: the pressure goes on, it does not start again
    clock.advance(15)
    assert up(scaler, 2).target == 9  # ceil(45 / 5): the last count sizes the step


def test_scale_up_after_zero_steps_at_the_first_count_above(clock):
    scaler = make(clock, scale_up_after=0.0)
    scaler.counted(11, 2)
    assert up(scaler, 2).target == 3


@pytest.mark.parametrize(
    ("target", "backlog", "expected"),
    [
        (2, 11, 3),  # just above 5 per child: ceil(11 / 5)
        (2, 40, 8),  # straight to what the backlog asks for, not one by one
        (2, 50, 10),  # exactly MAX
        (2, 500, 10),  # at most MAX
        (9, 46, 10),  # one below MAX: to MAX
        (4, 21, 5),  # just above 4 * 5
    ],
)
def test_the_size_of_a_step_up(clock, target, backlog, expected):
    scaler = make(clock)
    scaler.counted(backlog, target)
    clock.advance(30)
    step = up(scaler, target)
    assert step == Step(expected, "up", "backlog", step.detail)


def test_a_step_up_adds_at_least_one(clock):
    """The backlog that asked for growth may size fewer children than there are now (a reload raised the bar)."""
    scaler = make(clock)
    scaler.counted(11, 2)  # above 2 * 5
    scaler.spec.scale_up_backlog = 20.0  # ceil(11 / 20) = 1 child
    clock.advance(30)
    assert up(scaler, 2).target == 3


def test_no_step_up_at_max(clock):
    scaler = make(clock)
    scaler.counted(500, 10)
    clock.advance(1000)
    assert scaler.decide(10) is None


@pytest.mark.parametrize("count", [10, 3, 0, None], ids=["at-threshold", "below", "zero", "failed"])
def test_a_count_at_or_below_the_threshold_or_a_failed_one_resets_the_pressure(clock, count):
    scaler = make(clock)
    scaler.counted(40, 2)
    clock.advance(20)
    scaler.counted(count, 2)  # 10 is exactly 5 per child: not above
    assert scaler.backlog == count
    clock.advance(20)
    assert scaler.decide(2) is None  # 40 s since the first count above, but it did not hold
    scaler.counted(40, 2)
    clock.advance(29)
    assert scaler.decide(2) is None
    clock.advance(1)
    assert up(scaler, 2).target == 8


def test_the_threshold_is_per_child_of_the_target_counted_for(clock):
    scaler = make(clock)
    scaler.counted(30, 6)  # 5 per child of 6: not above
    clock.advance(100)
    assert scaler.decide(6) is None
    scaler.counted(31, 6)
    clock.advance(30)
    assert up(scaler, 6).target == 7  # ceil(31 / 5)


def test_a_pool_at_zero_grows_on_one_waiting_task(clock):
    """``processes = 0..4``: with no child, any task that waits is too many per child (BUG: max(target, 1))."""
    scaler = make(clock, processes=0, scale_max=4, scale_up_backlog=1.0)
    scaler.counted(1, 0)
    clock.advance(30)
    step = scaler.decide(0)
    assert step is not None and step.direction == "up" and step.target == 1


def test_a_pool_at_zero_grows_on_a_backlog_below_scale_up_backlog(clock):
    """With no child nobody takes the 3 waiting tasks: they must not wait for 3 more (BUG: max(target, 1))."""
    scaler = make(clock, processes=0, scale_max=4, scale_up_backlog=5.0)
    scaler.counted(3, 0)
    clock.advance(30)
    step = scaler.decide(0)
    assert step is not None and step.direction == "up" and step.target == 1


def test_a_pool_at_zero_grows_to_what_a_big_backlog_asks(clock):
    scaler = make(clock, processes=0, scale_max=4, scale_up_backlog=1.0)
    scaler.counted(3, 0)
    clock.advance(30)
    assert up(scaler, 0).target == 3


# -- the cooldown, and stepped()


def test_the_cooldown_blocks_a_second_step_then_allows_it(clock):
    scaler = make(clock)
    scaler.counted(40, 2)
    clock.advance(30)
    assert up(scaler, 2).target == 8
    scaler.stepped()  # at t = 30
    clock.advance(1)
    scaler.counted(100, 8)  # 12.5 per child: the pressure starts again at t = 31
    clock.advance(30)
    assert scaler.decide(8) is None  # t = 61: pressure for 30 s, but only 31 s since the step
    clock.advance(28.9)
    assert scaler.decide(8) is None  # t = 89.9
    clock.advance(0.1)
    assert up(scaler, 8).target == 10  # t = 90: 60 s since the step


def test_the_cooldown_blocks_a_step_down_too(clock):
    scaler = make(clock, scale_cooldown=400.0)
    scaler.stepped()  # a TTIN, say
    scaler.observe(3, 4)
    clock.advance(300)
    scaler.observe(3, 4)
    assert scaler.decide(4) is None  # spare for 300 s, but 400 s of cooldown
    clock.advance(100)
    assert down(scaler, 4).target == 3


def test_no_cooldown_before_the_first_step(clock):
    scaler = make(clock, scale_cooldown=1e9)
    scaler.counted(40, 2)
    clock.advance(30)
    assert up(scaler, 2).target == 8


def test_stepped_resets_the_pressure(clock):
    scaler = make(clock, scale_cooldown=0.0)
    scaler.counted(40, 2)
    clock.advance(30)
    assert scaler.decide(2) is not None
    scaler.stepped()
    assert scaler.decide(8) is None  # the pressure was measured for 2 children: measured afresh
    clock.advance(1000)
    assert scaler.decide(8) is None  # and no count came since
    scaler.counted(41, 8)  # above 8 * 5
    clock.advance(30)
    assert up(scaler, 8).target == 9


def test_stepped_resets_the_spare_time(clock):
    scaler = make(clock, scale_cooldown=0.0)
    scaler.observe(2, 5)
    clock.advance(300)
    assert down(scaler, 5).target == 4
    scaler.stepped()
    assert scaler.decide(4) is None
    scaler.observe(2, 4)  # still spare: counted from now
    clock.advance(299)
    scaler.observe(2, 4)
    assert scaler.decide(4) is None
    clock.advance(1)
    assert down(scaler, 4).target == 3


# -- down: a child spare the whole scale_down_after, and no task waited


def test_down_by_one_only_after_scale_down_after_of_spare(clock):
    scaler = make(clock)
    for _ in range(300):  # t = 0 .. 299
        scaler.observe(5, 8)  # each pass: 3 of 8 do nothing
        assert scaler.decide(8) is None
        clock.advance(1)
    scaler.observe(5, 8)
    step = down(scaler, 8)
    assert step == Step(7, "down", "idle", step.detail)  # one child fewer, however many were spare
    assert "300 s" in step.detail


def test_all_busy_resets_the_spare_time(clock):
    scaler = make(clock)
    scaler.observe(3, 4)
    clock.advance(200)
    scaler.observe(4, 4)  # every child works: none was spare the whole time
    clock.advance(1)
    scaler.observe(3, 4)  # spare again from here
    clock.advance(299)
    assert scaler.decide(4) is None
    clock.advance(1)
    assert down(scaler, 4).target == 3


def test_a_task_that_waited_resets_the_spare_time(clock):
    scaler = make(clock)
    scaler.observe(3, 4)
    clock.advance(200)
    scaler.counted(1, 4)  # not enough to grow, but a task waited: no child was spare
    assert scaler.decide(4) is None
    scaler.observe(3, 4)
    clock.advance(299)
    scaler.observe(3, 4)
    assert scaler.decide(4) is None
    clock.advance(1)
    assert down(scaler, 4).target == 3


def test_an_empty_backlog_keeps_the_spare_time(clock):
    scaler = make(clock)
    scaler.observe(3, 4)
    clock.advance(200)
    scaler.counted(0, 4)
    scaler.observe(3, 4)
    clock.advance(100)
    assert down(scaler, 4).target == 3


def test_never_below_min(clock):
    scaler = make(clock)
    scaler.observe(0, 2)
    clock.advance(10_000)
    scaler.observe(0, 2)
    assert scaler.decide(2) is None
    assert down(scaler, 3).target == 2


def test_down_to_zero_when_min_is_zero(clock):
    scaler = make(clock, processes=0, scale_max=4)
    scaler.observe(0, 1)
    clock.advance(300)
    assert down(scaler, 1).target == 0
    scaler.stepped()
    scaler.observe(0, 0)  # no child, so none spare
    clock.advance(10_000)
    assert scaler.decide(0) is None


def test_up_wins_over_down(clock):
    """Both are due (a short scale_down_after): the backlog asks for more, not fewer."""
    scaler = make(clock, scale_down_after=10.0)
    scaler.counted(40, 4)
    scaler.observe(3, 4)  # one spare since the count (say its poll just ended)
    clock.advance(10)
    scaler.observe(3, 4)
    assert down(scaler, 4).target == 3  # (were it asked now)
    clock.advance(20)
    scaler.observe(3, 4)
    assert up(scaler, 4).target == 8


def test_bound(clock):
    scaler = make(clock)
    assert [scaler.bound(n) for n in (0, 1, 2, 5, 10, 11, 100)] == [2, 2, 2, 5, 10, 10, 10]
    scaler.spec.processes, scaler.spec.scale_max = 4, 6  # a reload narrowed the bounds
    assert [scaler.bound(n) for n in (2, 5, 8)] == [4, 5, 6]


# -- the ini: processes = MIN..MAX and the scale_* settings

MASTER = "[caravand]\n"
DECIDER = """
[pool:demo-decider]
use = egg:caravand#decider
domain = CaravanDemo
task_list = default
modules = caravand.examples.demo
"""


def load_pool(tmp_path, extra: str, head: str = MASTER, name: str = "caravan.ini") -> config.PoolSpec:
    return config.load(write_ini(tmp_path, head + DECIDER + extra, name)).pools["demo-decider"]


def pool_error(tmp_path, extra: str, head: str = MASTER) -> str:
    path = write_ini(tmp_path, head + DECIDER + extra)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert info.value.exit_code == 78
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize(
    ("value", "least", "most", "autoscaled", "text"),
    [
        ("2..16", 2, 16, True, "2..16"),
        ("0..4", 0, 4, True, "0..4"),
        (" 1 .. 3 ", 1, 3, True, "1..3"),
        ("4", 4, 4, False, "4"),
        ("3..3", 3, 3, False, "3"),  # no room to scale: a fixed pool
        ("0", 0, 0, False, "0"),
    ],
)
def test_processes(tmp_path, value, least, most, autoscaled, text):
    spec = load_pool(tmp_path, f"processes = {value}\n")
    assert (spec.processes, spec.scale_max, spec.autoscaled, spec.processes_text) == (least, most, autoscaled, text)


def test_processes_default_is_one_fixed(tmp_path):
    spec = load_pool(tmp_path, "")
    assert (spec.processes, spec.scale_max, spec.autoscaled, spec.processes_text) == (1, 1, False, "1")


@pytest.mark.parametrize("value", ["16..2", "a..b", "2..", "..3", "0..0", "2..x", "-1..3", "1.5..3", "..", "2...5"])
def test_bad_processes_range(tmp_path, value):
    message = pool_error(tmp_path, f"processes = {value}\n")
    assert f"[pool:demo-decider] processes: {value!r}: expected" in message


def test_processes_max_above_max_processes(tmp_path):
    message = pool_error(tmp_path, "processes = 2..300\n")  # the default max_processes: 256
    assert "[pool:demo-decider] processes = 2..300: at most 256 per pool" in message
    head = MASTER + "max_processes = 8\n"
    assert "processes = 2..9: at most 8 per pool" in pool_error(tmp_path, "processes = 2..9\n", head)
    assert load_pool(tmp_path, "processes = 2..8\n", head, "ok.ini").scale_max == 8


def test_scaling_settings_on_an_autoscaled_pool(tmp_path):
    spec = load_pool(
        tmp_path,
        "processes = 2..16\nbacklog_interval = 10\nscale_up_backlog = 2.5\nscale_up_after = 0\n"
        "scale_down_after = 120\nscale_cooldown = 0\n",
    )
    assert (spec.backlog_interval, spec.scale_up_backlog, spec.scale_up_after) == (10.0, 2.5, 0.0)
    assert (spec.scale_down_after, spec.scale_cooldown) == (120.0, 0.0)


def test_scaling_defaults(tmp_path):
    spec = load_pool(tmp_path, "processes = 2..16\n")
    assert (spec.backlog_interval, spec.scale_up_backlog, spec.scale_up_after) == (30.0, 1.0, 30.0)
    assert (spec.scale_down_after, spec.scale_cooldown) == (300.0, 60.0)


@pytest.mark.parametrize("key", ["scale_up_backlog", "scale_up_after", "scale_down_after", "scale_cooldown"])
@pytest.mark.parametrize("processes", ["", "processes = 4\n", "processes = 3..3\n"])
def test_scaling_settings_on_a_fixed_pool_are_refused(tmp_path, key, processes):
    message = pool_error(tmp_path, f"{processes}{key} = 7\n")
    assert f"[pool:demo-decider] {key}: only a pool that autoscales uses it" in message
    assert "MIN..MAX" in message


@pytest.mark.parametrize(
    "line",
    ["scale_up_backlog = 0", "scale_up_backlog = -1", "scale_down_after = 0", "scale_up_after = soon",
     "scale_cooldown = -5", "backlog_interval = -1", "scale_up_backlog = nan"],
)  # fmt: skip
def test_bad_scaling_values(tmp_path, line):
    key, value = (part.strip() for part in line.split("="))
    assert f"[pool:demo-decider] {key}: {value!r}: expected" in pool_error(tmp_path, f"processes = 2..4\n{line}\n")


def test_backlog_interval_zero_refused_when_autoscaled(tmp_path):
    message = pool_error(tmp_path, "processes = 2..16\nbacklog_interval = 0\n")
    assert "[pool:demo-decider] backlog_interval = 0: a pool that autoscales" in message


@pytest.mark.parametrize("value", ["0", "0.0"])
def test_backlog_interval_zero_accepted_when_fixed(tmp_path, value):
    assert load_pool(tmp_path, f"processes = 3\nbacklog_interval = {value}\n").backlog_interval == 0.0


def test_same_work_when_only_the_sizing_differs(tmp_path):
    fixed = load_pool(tmp_path, "processes = 2\n", name="a.ini")
    scaled = load_pool(
        tmp_path,
        "processes = 2..16\nbacklog_interval = 10\nscale_up_backlog = 3\nscale_up_after = 5\n"
        "scale_down_after = 60\nscale_cooldown = 20\n",
        name="b.ini",
    )
    assert fixed.same_work(scaled) and scaled.same_work(fixed)
    quiet = load_pool(tmp_path, "processes = 7\nbacklog_interval = 0\n", name="c.ini")
    assert quiet.same_work(scaled) and fixed.same_work(quiet)
    defaults = load_pool(tmp_path, "processes = 2..16\n", name="d.ini")
    assert defaults.same_work(scaled)
    other_domain = config.load(
        write_ini(tmp_path, MASTER + DECIDER.replace("CaravanDemo", "Other") + "processes = 2..16\n", "e.ini")
    ).pools["demo-decider"]
    assert not other_domain.same_work(scaled) and not scaled.same_work(other_domain)
    slower = load_pool(tmp_path, "processes = 2..16\nmin_uptime = 9\n", name="f.ini")
    assert not slower.same_work(scaled)
