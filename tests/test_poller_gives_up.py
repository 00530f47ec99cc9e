"""A poll that keeps failing with an error no retry can fix ends the loop (issue 7, item 11).

Before, ``UnknownResourceFault`` on a poll of a deprecated or missing domain,
access denied or a validation error was retried for ever while the pool
reported READY and did nothing.
"""

from __future__ import annotations

import pytest
from stubs import PollRecordingHooks, StubbedPoller

from caravand.activity_worker import ActivityWorker
from caravand.poller import GIVE_UP_AFTER, PollerGaveUp


class Harness(StubbedPoller):
    poll_operation = "poll_for_activity_task"
    empty_poll = {"startedEventId": 0}

    def __init__(self):
        super().__init__(ActivityWorker, "acts", [], identity="worker-1", hooks=PollRecordingHooks())


@pytest.mark.parametrize(
    "code",
    ["UnknownResourceFault", "OperationNotPermittedFault", "AccessDeniedException", "ValidationException"],
)
def test_errors_no_retry_can_fix_end_the_loop_after_a_few_in_a_row(code):
    h = Harness()
    for _ in range(GIVE_UP_AFTER):
        h.add_poll_error(code)
    for _ in range(GIVE_UP_AFTER - 1):
        assert h.poller.run_once() is False  # backs off and tries again: it may be a blip
    with pytest.raises(PollerGaveUp) as info:
        h.poller.run_once()
    message = str(info.value)
    assert f"polling D/acts failed {GIVE_UP_AFTER} times in a row with an error no retry can fix" in message
    assert code in message and "\n" not in message
    assert len(h.fake.sleeps) == GIVE_UP_AFTER - 1  # no hot loop on the way
    h.assert_done()


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400), ("InternalFailure", 500)])
def test_retryable_errors_never_end_the_loop(code, status):
    h = Harness()
    for _ in range(3 * GIVE_UP_AFTER):
        h.add_poll_error(code, status)
    for _ in range(3 * GIVE_UP_AFTER):
        assert h.poller.run_once() is False
    h.assert_done()


def test_a_good_poll_between_resets_the_count():
    h = Harness()
    for _ in range(GIVE_UP_AFTER - 1):
        h.add_poll_error("UnknownResourceFault")
    h.add_empty_poll()
    for _ in range(GIVE_UP_AFTER - 1):
        h.add_poll_error("UnknownResourceFault")
    for _ in range(2 * GIVE_UP_AFTER - 1):
        h.poller.run_once()  # never raises
    h.assert_done()


def test_missing_or_partial_credentials_give_up_at_once():
    """A ConfigError (no or incomplete credentials, no region) is this machine's setup: no retry changes it."""
    from caravand import swf

    h = Harness()

    def poll_once():
        raise swf.ConfigError("PollForActivityTask: incomplete AWS credentials (...): set AWS_SECRET_ACCESS_KEY")

    h.poller.poll_once = poll_once
    with pytest.raises(PollerGaveUp) as info:
        h.poller.run_once()
    assert "incomplete AWS credentials" in str(info.value)
    assert h.fake.sleeps == []
