"""The restart state machine of a pool (caravand.states), on a fake clock."""

from __future__ import annotations

import pytest
from helpers import FakeClock

from caravand.states import KillStage, PoolHealth, PoolState, RestartPolicy

POLICY = RestartPolicy(
    backoff_base=1.0, backoff_cap=8.0, max_restarts=3, restart_window=60.0, fatal_retry=300.0, min_uptime=5.0
)


@pytest.fixture
def clock():
    return FakeClock()


def make(clock, policy=POLICY, rng=lambda: 1.0) -> PoolHealth:
    return PoolHealth("p", policy, clock, rng)


def crash_and_wait(health: PoolHealth, clock: FakeClock, uptime: float = 0.0) -> float:
    """A crash; then let the backoff pass and the pool start again. Returns the delay."""
    health.child_exited(crashed=True, uptime=uptime)
    assert health.state is PoolState.BACKOFF
    delay = health.retry_at - clock()
    clock.advance(delay)
    health.tick(all_booted_for=None)
    assert health.state is PoolState.STARTING
    return delay


# -- STARTING -> RUNNING


def test_new_pool_starts_and_may_spawn(clock):
    health = make(clock)
    assert health.state is PoolState.STARTING
    assert health.may_spawn()
    assert health.next_check() is None
    assert health.transitions == []


def test_running_after_min_uptime_with_all_booted(clock):
    health = make(clock)
    health.tick(all_booted_for=None)  # not every child booted
    assert health.state is PoolState.STARTING
    health.tick(all_booted_for=4.99)  # booted, not settled
    assert health.state is PoolState.STARTING
    health.tick(all_booted_for=5.0)
    assert health.state is PoolState.RUNNING
    assert health.transitions == [(PoolState.STARTING, PoolState.RUNNING)]
    assert health.since == clock()
    assert health.may_spawn()
    assert health.next_check() is None


def test_running_resets_the_consecutive_crashes(clock):
    health = make(clock, RestartPolicy(max_restarts=100, backoff_base=1.0, backoff_cap=60.0, min_uptime=5.0))
    for _ in range(3):
        clock.advance(30)  # crashes spread out so the window never fills
        crash_and_wait(health, clock)
    assert health.consecutive == 3
    health.tick(all_booted_for=5.0)
    assert health.state is PoolState.RUNNING
    assert health.consecutive == 0
    # So the next crash of a long-lived child is replaced at once again.
    health.child_exited(crashed=True, uptime=600.0)
    assert health.retry_at == clock()


# -- crashes and backoff


def test_crash_of_a_long_lived_child_is_replaced_at_once_and_moves_nothing(clock):
    health = make(clock)
    health.tick(all_booted_for=10.0)
    clock.advance(100)
    health.child_exited(crashed=True, uptime=100.0)
    assert health.state is PoolState.RUNNING  # not a backoff: nothing failed to start
    assert health.may_spawn()
    health.spawned()
    assert health.restarts == 1
    assert list(health.crashes) == []
    assert health.transitions == [(PoolState.STARTING, PoolState.RUNNING)]


def test_correlated_crashes_of_long_lived_children_never_go_fatal(clock):
    """Eight children that ran an hour, dying together (an OOM kill), are all replaced at once."""
    health = make(clock)  # max_restarts=3
    health.tick(all_booted_for=3600.0)
    for _ in range(8):
        health.child_exited(crashed=True, uptime=3600.0)
    assert health.state is PoolState.RUNNING
    for _ in range(8):
        assert health.may_spawn()
        health.spawned()
    assert health.replacements == 0
    assert health.restarts == 8


def test_operator_kills_a_few_seconds_apart_are_each_replaced_at_once(clock):
    """Seen: a child killed after 31 s of uptime waited 54 s, as the pool never settled again."""
    health = make(clock)
    health.tick(all_booted_for=60.0)
    for _ in range(3):
        clock.advance(3)
        health.child_exited(crashed=True, uptime=31.0)
        assert health.may_spawn()
        health.spawned()
    assert health.state is PoolState.RUNNING


def test_a_long_lived_child_is_replaced_at_once_even_during_a_backoff(clock):
    """The replacement is owed per child: another child's failed start does not delay it."""
    health = make(clock, rng=lambda: 1.0)
    health.child_exited(crashed=True, uptime=0.5)  # a failed start: backoff 1 s
    assert health.state is PoolState.BACKOFF
    assert not health.may_spawn()
    health.child_exited(crashed=True, uptime=500.0)
    assert health.may_spawn()  # one immediate replacement
    health.spawned()
    assert not health.may_spawn()  # the failed start still waits its delay
    assert health.state is PoolState.BACKOFF


def test_backoff_blocks_spawns_until_retry_at(clock):
    health = make(clock, rng=lambda: 0.5)
    health.child_exited(crashed=True, uptime=1.0)  # died before min_uptime
    assert health.state is PoolState.BACKOFF
    assert health.retry_at == pytest.approx(clock() + 0.5)
    assert not health.may_spawn()
    assert health.next_check() == health.retry_at
    clock.advance(0.49)
    health.tick(all_booted_for=None)
    assert health.state is PoolState.BACKOFF
    assert not health.may_spawn()
    clock.advance(0.01)
    assert health.may_spawn()
    health.tick(all_booted_for=None)
    assert health.state is PoolState.STARTING
    assert health.next_check() is None


def test_delays_grow_exponentially_and_are_capped(clock):
    policy = RestartPolicy(backoff_base=1.0, backoff_cap=8.0, max_restarts=1000, restart_window=60.0, min_uptime=5.0)
    health = make(clock, policy)
    delays = [crash_and_wait(health, clock) for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert health.restarts == 7


def test_delays_are_jittered_by_the_rng(clock):
    policy = RestartPolicy(backoff_base=2.0, backoff_cap=100.0, max_restarts=1000)
    health = make(clock, policy, rng=lambda: 0.25)
    delays = [crash_and_wait(health, clock) for _ in range(4)]
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0])


def test_boot_failures_never_hot_loop(clock):
    """A child that never boots (uptime 0) always waits before the next try."""
    for rng in (lambda: 1.0, lambda: 0.5, lambda: 1e-3):
        health = make(clock, RestartPolicy(max_restarts=1000, backoff_base=1.0, backoff_cap=60.0), rng=rng)
        previous = 0.0
        for _ in range(12):
            delay = crash_and_wait(health, clock, uptime=0.0)
            assert delay > 0
            assert delay >= previous  # with a constant rng: never shorter
            previous = delay


# -- FATAL


def test_too_many_crashes_in_the_window_go_fatal(clock):
    health = make(clock)  # max_restarts = 3
    for _ in range(3):
        clock.advance(1)
        crash_and_wait(health, clock)
    assert health.restarts == 3
    clock.advance(1)
    health.child_exited(crashed=True, uptime=0.0)
    assert health.state is PoolState.FATAL
    assert health.restarts == 3  # no respawn for the fourth
    assert not health.may_spawn()
    assert health.next_check() == clock() + POLICY.fatal_retry
    clock.advance(POLICY.fatal_retry - 1)
    health.tick(all_booted_for=None)
    assert health.state is PoolState.FATAL
    assert not health.may_spawn()


def test_crashes_beyond_the_window_do_not_accumulate(clock):
    policy = RestartPolicy(backoff_base=0.1, backoff_cap=0.1, max_restarts=2, restart_window=10.0)
    health = make(clock, policy)
    for _ in range(10):
        clock.advance(10.5)
        crash_and_wait(health, clock)
        assert len(health.crashes) <= 2
    assert health.state is PoolState.STARTING
    assert health.restarts == 10


def test_window_counts_only_recent_crashes(clock):
    policy = RestartPolicy(backoff_base=0.1, backoff_cap=0.1, max_restarts=2, restart_window=10.0)
    health = make(clock, policy)
    crash_and_wait(health, clock)  # t0 (+0.1)
    clock.advance(5)
    crash_and_wait(health, clock)  # ~t0+5
    clock.advance(5)
    crash_and_wait(health, clock)  # ~t0+10.3: the first crash has left the window
    assert health.state is PoolState.STARTING
    clock.advance(1)
    health.child_exited(crashed=True, uptime=0.0)  # three within 10 s
    assert health.state is PoolState.FATAL


def test_fatal_is_retried_after_fatal_retry_with_a_fresh_history(clock):
    health = make(clock)
    for _ in range(4):
        health.child_exited(crashed=True, uptime=0.0)
        if health.state is PoolState.BACKOFF:
            clock.advance(health.retry_at - clock())
            health.tick(all_booted_for=None)
    assert health.state is PoolState.FATAL
    fatal_at = clock()
    clock.advance(POLICY.fatal_retry)
    assert health.next_check() == fatal_at + POLICY.fatal_retry
    health.tick(all_booted_for=None)
    assert health.state is PoolState.STARTING
    assert health.may_spawn()
    assert health.next_check() is None
    assert len(health.crashes) == 0 and health.consecutive == 0
    # A fresh window: one crash is a backoff again, with the first delay.
    health.child_exited(crashed=True, uptime=0.0)
    assert health.state is PoolState.BACKOFF
    assert health.retry_at == clock() + POLICY.backoff_base


def test_a_crash_while_fatal_changes_nothing(clock):
    """Other children of a pool that went FATAL may still die: no error, no respawn."""
    health = make(clock)
    for _ in range(4):
        health.child_exited(crashed=True, uptime=0.0)
    assert health.state is PoolState.FATAL
    since = health.since
    clock.advance(1)
    health.child_exited(crashed=True, uptime=30.0)
    health.child_exited(crashed=True, uptime=0.0)
    assert health.state is PoolState.FATAL
    assert health.since == since  # the retry is not pushed back
    assert not health.may_spawn()
    clock.advance(POLICY.fatal_retry)
    health.tick(all_booted_for=None)
    assert health.state is PoolState.STARTING


# -- expected exits, STOPPING, the edges


def test_expected_exits_change_nothing(clock):
    health = make(clock)
    health.tick(all_booted_for=5.0)
    for uptime in (0.0, 1.0, 100.0):
        health.child_exited(crashed=False, uptime=uptime)
    assert health.state is PoolState.RUNNING
    assert len(health.crashes) == 0 and health.consecutive == 0 and health.restarts == 0
    assert health.may_spawn()
    assert health.transitions == [(PoolState.STARTING, PoolState.RUNNING)]


def test_stopping_is_terminal(clock):
    health = make(clock)
    health.stop()
    assert health.state is PoolState.STOPPING
    health.stop()  # idempotent
    assert health.transitions == [(PoolState.STARTING, PoolState.STOPPING)]
    assert not health.may_spawn()
    assert health.next_check() is None
    health.child_exited(crashed=True, uptime=0.0)
    health.tick(all_booted_for=100.0)
    clock.advance(10_000)
    health.tick(all_booted_for=100.0)
    assert health.state is PoolState.STOPPING
    assert len(health.crashes) == 0
    for state in PoolState:
        with pytest.raises(RuntimeError, match="no edge from STOPPING"):
            health.change_state(state)


@pytest.mark.parametrize("state", [PoolState.STARTING, PoolState.RUNNING, PoolState.BACKOFF, PoolState.FATAL])
def test_every_state_may_stop(clock, state):
    health = make(clock)
    health.state = state
    health.stop()
    assert health.state is PoolState.STOPPING


@pytest.mark.parametrize(
    ("start", "refused"),
    [
        (PoolState.STARTING, PoolState.STARTING),
        (PoolState.RUNNING, PoolState.STARTING),
        (PoolState.RUNNING, PoolState.RUNNING),
        (PoolState.BACKOFF, PoolState.RUNNING),
        (PoolState.FATAL, PoolState.RUNNING),
        (PoolState.FATAL, PoolState.BACKOFF),
        (PoolState.FATAL, PoolState.FATAL),
    ],
)
def test_change_state_refuses_edges_the_diagram_lacks(clock, start, refused):
    health = make(clock)
    health.state = start
    with pytest.raises(RuntimeError, match=f"no edge from {start.name} to {refused.name}"):
        health.change_state(refused)
    assert health.state is start
    assert health.transitions == []


def test_change_state_records_the_edge_and_time(clock):
    health = make(clock)
    clock.advance(3)
    health.change_state(PoolState.BACKOFF)
    assert health.since == clock()
    assert health.transitions == [(PoolState.STARTING, PoolState.BACKOFF)]
    assert repr(health) == "<PoolHealth p BACKOFF>"


def test_a_failed_start_cancels_an_owed_replacement_so_failed_spawns_still_back_off(clock):
    """Seen: a long-lived child died, then every spawn failed (EMFILE): BACKOFF x3, then FATAL in 0.3 s."""
    health = make(clock, rng=lambda: 1.0)
    health.tick(all_booted_for=60.0)
    health.child_exited(crashed=True, uptime=600.0)  # owed at once
    assert health.may_spawn()
    health.child_exited(crashed=True, uptime=0.0)  # the replacement's spawn failed
    assert health.state is PoolState.BACKOFF
    assert not health.may_spawn()  # it waits its backoff like any failed start
    assert health.replacements == 0


# -- KillStage: how far the master went to end a child, forward only


def test_a_kill_stage_only_moves_forward():
    order = [KillStage.NONE, KillStage.ALARMED, KillStage.ABORTED, KillStage.KILLED]
    for i, stage in enumerate(order):
        for j, new in enumerate(order):
            assert stage.may_become(new) is (j > i), (stage, new)
