"""The child protocol (caravand.protocol): the lines a child sends, as the master reads them."""

from __future__ import annotations

import os

import pytest
from test_master_unit import FakeSystem, make_master, write_config

from caravand import child as child_module
from caravand import protocol
from caravand.child import Reporter
from caravand.master import Child
from caravand.states import ChildState


def test_the_lines_on_the_wire():
    assert protocol.booted() == b"BOOTED\n"
    assert protocol.busy(ChildState.POLLING, 5123.25) == b"POLLING 5123.250\n"
    assert protocol.busy(ChildState.PAGING, 12.0004) == b"PAGING 12.000\n"
    assert protocol.busy(ChildState.WORKING, None) == b"WORKING -\n"
    assert protocol.idle() == b"IDLE\n"
    assert protocol.done("completed") == b"DONE completed\n"
    assert protocol.failed("cannot import module 'x'") == b"FAILED cannot import module 'x'\n"
    assert protocol.beat() == b"BEAT\n"


FAILED_REASON = "polls keep failing: UnknownResourceFault"


@pytest.mark.parametrize(
    ("line", "word", "deadline", "text"),
    [
        (protocol.booted(), protocol.BOOTED, None, ""),
        (protocol.busy(ChildState.POLLING, 70.5), protocol.POLLING, 70.5, ""),
        (protocol.busy(ChildState.PAGING, 30.0), protocol.PAGING, 30.0, ""),
        (protocol.busy(ChildState.WORKING, 1e9 + 0.125), protocol.WORKING, 1e9 + 0.125, ""),
        (protocol.busy(ChildState.WORKING, None), protocol.WORKING, None, ""),
        (protocol.idle(), protocol.IDLE, None, ""),
        (protocol.done("workflow-failed"), protocol.DONE, None, "workflow-failed"),
        (protocol.failed(FAILED_REASON), protocol.FAILED, None, FAILED_REASON),
        (protocol.beat(), protocol.BEAT, None, ""),
    ],
)
def test_what_is_encoded_decodes_to_the_same_message(line, word, deadline, text):
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line.rstrip(b"\n")) == protocol.Message(word, deadline=deadline, text=text)


def test_every_busy_state_has_its_word_and_only_those_carry_a_deadline():
    assert set(protocol.BUSY.values()) == set(ChildState) - {ChildState.BOOTING, ChildState.IDLE}
    assert {protocol.BUSY_WORD[state] for state in protocol.BUSY.values()} == set(protocol.BUSY)


def test_a_line_is_one_line_below_pipe_buf_whatever_it_carries():
    """Writes below PIPE_BUF are atomic: the main thread's lines and the beat thread's never interleave."""
    reason = "Traceback\n  line 1\r\n" + "x" * 10 * protocol.PIPE_BUF
    line = protocol.failed(reason)
    assert len(line) <= protocol.PIPE_BUF and line.count(b"\n") == 1 and line.endswith(b"\n")
    assert line.startswith(b"FAILED Traceback line 1 xxx")
    assert protocol.done("two\nlines") == b"DONE two lines\n"


@pytest.mark.parametrize(
    ("line", "word"),
    [(b"WORKING soon", protocol.WORKING), (b"HELLO", "HELLO"), (b"\xff\xfe", "\ufffd\ufffd")],
)
def test_what_cannot_be_read_is_garbled(line, word):
    message = protocol.decode(line)
    assert message.garbled and message.word == word and message.deadline is None


def test_an_empty_line_is_no_message():
    assert protocol.decode(b"") is None
    assert protocol.decode(b"  \r") is None


def test_a_failed_reason_with_no_words_is_empty_and_the_word_alone_is_no_garble():
    assert protocol.decode(b"FAILED") == protocol.Message(protocol.FAILED)
    assert protocol.decode(b"POLLING") == protocol.Message(protocol.POLLING)


# -- both sides: the child's Reporter writes, the master reads


@pytest.fixture
def titles(monkeypatch):
    shown = []
    monkeypatch.setattr(child_module.setproctitle, "setproctitle", shown.append)
    return shown


def test_the_reporter_and_the_master_agree_on_every_line(tmp_path, titles):
    """What the child's poll loop does, through a real pipe, is what the master records."""
    now = 5000.0
    master = make_master(write_config(tmp_path), FakeSystem(lambda: now))
    read_end, write_end = os.pipe2(os.O_NONBLOCK)
    child = Child(4242, master.pools["demo"], 1, read_end, now - 2, now - 2)
    reporter = Reporter(write_end, "caravand: decider demo#1 [CaravanDemo/default]", os.getppid())
    try:
        reporter.booted()
        master.read_child(child)
        assert (child.state, child.booted_at, child.last_seen) == (ChildState.IDLE, now, now)
        reporter.poll_started(None, 5070.0)
        master.read_child(child)
        assert (child.state, child.deadline) == (ChildState.POLLING, 5070.0)
        reporter.paging_started(None, 5100.25)
        master.read_child(child)
        assert (child.state, child.deadline) == (ChildState.PAGING, 5100.25)
        reporter.poll_ended(None, True, 1.0)  # a task: still busy until it starts
        reporter.task_started(None, object(), None)
        master.read_child(child)
        assert (child.state, child.deadline) == (ChildState.WORKING, None)
        reporter.task_ended(None, object(), "completed", 0.5)
        master.read_child(child)
        assert (child.state, child.deadline, child.tasks) == (ChildState.IDLE, None, 1)
        reporter.poll_started(None, 5200.0)
        reporter.poll_ended(None, False, 60.0)
        reporter.failed("<html><body>503\nService Unavailable</body></html>" + "!" * 1000)
        master.read_child(child)
        assert child.state is ChildState.IDLE
        assert child.failure.startswith("503 Service Unavailable !!!") and len(child.failure) == protocol.MAX_REASON
        assert reporter.state is ChildState.IDLE
        assert [t.rpartition(" ")[2] for t in titles] == [
            "booted", "polling", "paging", "working", "idle", "polling", "idle"
        ]  # fmt: skip
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_child_beats_only_when_it_said_nothing_for_a_while(monkeypatch, titles):
    """Any line says the child lives: a BEAT besides would only wake the master's loop once more."""
    from caravand import child as child_module

    now = [100.0]
    monkeypatch.setattr(child_module.time, "monotonic", lambda: now[0])
    read_end, write_end = os.pipe2(os.O_NONBLOCK)
    reporter = Reporter(write_end, "caravand: decider demo#1 [CaravanDemo/default]", os.getppid())
    try:
        reporter.booted()
        now[0] += 2.0
        assert reporter.beat_if_quiet(5.0) is False  # BOOTED 2 s ago
        now[0] += 0.5
        assert reporter.beat_if_quiet(5.0) is True  # 2.5 s of silence: half the interval
        now[0] += 1.0
        reporter.poll_started(None, 200.0)
        now[0] += 2.4
        assert reporter.beat_if_quiet(5.0) is False
        now[0] += 5.0
        assert reporter.beat_if_quiet(5.0) is True
        assert os.read(read_end, 4096).split() == [b"BOOTED", b"BEAT", b"POLLING", b"200.000", b"BEAT"]
    finally:
        os.close(read_end)
        os.close(write_end)
