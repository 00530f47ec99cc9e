"""What a pass of the master's loop costs: a beat does not walk every child, and no deadline is missed for it.

With hundreds of children, a pass comes with nearly every beat; walking
them all on each (deadlines, targets, STATUS) made the master's CPU grow
with the square of their number (bench/supervision.py: 8.6 % of a core with
256 idle children). The loop now walks them when a deadline is due, or when
something changed (a boot, an exit, a signal). These tests run real passes
(``loop_once``, with real pipes for the fake children) on a fake clock.
"""

from __future__ import annotations

import os
import selectors
import signal

import pytest
from test_master_unit import (  # noqa: F401 - fixtures
    boot_all,
    clock,
    exited,
    make_master,
    signals_to,
    spawned,
    system,
    write_config,
)

from caravand.master import Master


@pytest.fixture
def looping(tmp_path, system, spawned, clock, monkeypatch):
    """A master whose loop runs for real on a fake clock; its children's pipes are ours to write; walks counted."""
    master = make_master(write_config(tmp_path), system)
    master.selector = selectors.DefaultSelector()
    master.wakeup = os.pipe2(os.O_NONBLOCK)
    master.selector.register(master.wakeup[0], selectors.EVENT_READ, None)
    master.read_ready = lambda timeout: Master.read_ready(master, 0)  # the fake clock never waits
    walks = {"watch_children": 0, "manage_pools": 0}
    for name in walks:
        real = getattr(master, name)

        def counted(now, real=real, name=name):
            walks[name] += 1
            return real(now)

        monkeypatch.setattr(master, name, counted)
    pipes: dict[int, int] = {}

    def give_pipes():
        for child in spawned:
            if child.fd < 0 and child.pid not in pipes:
                read_end, write_end = os.pipe2(os.O_NONBLOCK)
                child.fd, pipes[child.pid] = read_end, write_end
                master.selector.register(read_end, selectors.EVENT_READ, child)

    master.give_pipes, master.pipes, master.walks = give_pipes, pipes, walks
    master.loop_once()  # spawns
    give_pipes()
    boot_all(master)
    master.loop_once()
    yield master
    master.selector.close()
    for fd in [*master.wakeup, *pipes.values(), *(c.fd for c in spawned if c.fd >= 0)]:
        try:
            os.close(fd)
        except OSError:
            pass


def say(master, child, line: bytes) -> None:
    os.write(master.pipes[child.pid], line)


def test_beats_do_not_walk_the_children(looping, spawned, clock):
    looping.walks.update(watch_children=0, manage_pools=0)
    for _ in range(40):  # 40 beats over 0.8 s: less than a TICK
        clock.advance(0.02)
        for child in spawned:
            say(looping, child, b"BEAT\n")
        looping.loop_once()
    assert looping.walks == {"watch_children": 0, "manage_pools": 0}
    assert all(child.last_seen == clock() for child in spawned)  # every beat was read
    clock.advance(0.3)
    looping.loop_once()
    assert looping.walks["manage_pools"] == 1, "still once a TICK"


def test_a_child_silent_past_beat_timeout_is_still_aborted_on_time(looping, spawned, system, clock):
    quiet, chatty = spawned
    for _ in range(31):  # beat_timeout is 30
        clock.advance(1)
        say(looping, chatty, b"BEAT\n")
        looping.loop_once()
        if signals_to(system, quiet):
            break
    assert signals_to(system, quiet) == [signal.SIGABRT]
    assert clock() - quiet.last_seen <= 31
    assert signals_to(system, chatty) == []


def test_a_deadline_said_between_walks_is_watched_when_it_comes(looping, spawned, system, clock):
    busy, other = spawned
    deadline = clock() + 3
    say(looping, busy, f"WORKING {deadline:.3f}\n".encode())
    looping.loop_once()
    for _ in range(30):  # it beats all along, but its task is late: deadline 3 s + heartbeat_grace 10 s
        clock.advance(0.5)
        for child in spawned:
            say(looping, child, b"BEAT\n")
        looping.loop_once()
        if signals_to(system, busy):
            break
    assert signals_to(system, busy) == [signal.SIGABRT]
    assert 10 < clock() - deadline <= 10.5  # the first pass past deadline + heartbeat_grace
    assert signals_to(system, other) == []


def test_a_child_that_exits_is_replaced_in_the_same_pass(looping, spawned, system, clock):
    clock.advance(100)  # past min_uptime: replaced at once
    looping.loop_once()
    before = looping.walks["manage_pools"]
    system.exits.append((spawned[0].pid, signal.SIGKILL))
    looping.enqueue_signal(signal.SIGCHLD, None)  # as the kernel and the handler do
    looping.loop_once()
    assert len(spawned) == 3 and looping.walks["manage_pools"] == before + 1


def test_an_exit_whose_sigchld_was_lost_is_still_reaped_within_a_tick(looping, spawned, system, clock):
    looping.loop_once()
    system.exits.append((spawned[0].pid, signal.SIGKILL))
    looping.loop_once()  # no SIGCHLD: the pass does not wait on waitpid
    assert len(spawned) == 2
    clock.advance(1.0)
    looping.loop_once()
    assert len(spawned) == 3 and spawned[0].pid not in looping.children
