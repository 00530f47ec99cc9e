"""A poll that keeps failing with an error no retry can fix ends the loop (issue 7, item 11).

Before, ``UnknownResourceFault`` on a poll of a deprecated or missing domain,
access denied or a validation error was retried for ever while the pool
reported READY and did nothing. A brief outage (every child of a pool sees
it at once) must not end them all: the errors must last GIVE_UP_SECONDS.
"""

from __future__ import annotations

import pytest
from stubs import PollRecordingHooks, StubbedPoller

from caravand import swf
from caravand.activity_worker import ActivityWorker
from caravand.poller import GIVE_UP_AFTER, GIVE_UP_SECONDS, POLL_RETRY_CAP, THROTTLED_POLL_RETRY_CAP, PollerGaveUp


class Harness(StubbedPoller):
    poll_operation = "poll_for_activity_task"
    empty_poll = {"startedEventId": 0}

    def __init__(self):
        super().__init__(ActivityWorker, "acts", [], identity="worker-1", hooks=PollRecordingHooks())


def polls_until_it_gives_up(h: Harness, limit: int = 50) -> tuple[int, PollerGaveUp]:
    for count in range(1, limit + 1):
        try:
            assert h.poller.run_once() is False
        except PollerGaveUp as gave_up:
            return count, gave_up
    raise AssertionError(f"still polling after {limit} errors")


@pytest.mark.parametrize(
    "code",
    ["UnknownResourceFault", "OperationNotPermittedFault", "AccessDeniedException", "ValidationException"],
)
def test_errors_no_retry_can_fix_end_the_loop_once_they_last(code):
    h = Harness()
    for _ in range(50):
        h.add_poll_error(code)
    started = h.fake.now
    count, gave_up = polls_until_it_gives_up(h)
    assert count >= GIVE_UP_AFTER
    assert h.fake.now - started >= GIVE_UP_SECONDS  # a brief outage ends no child
    message = str(gave_up)
    assert f"polling D/acts failed {count} times in a row over" in message and "no retry can fix" in message
    assert code in message and "\n" not in message
    assert len(h.fake.sleeps) == count - 1  # a pause between all of them: no hot loop


def test_a_brief_outage_ends_nothing():
    """Five unfixable errors in a few seconds (an IAM change spreading), then it works: the loop goes on."""
    h = Harness()
    for _ in range(GIVE_UP_AFTER + 1):
        h.add_poll_error("AccessDeniedException")
    h.add_empty_poll()
    for _ in range(GIVE_UP_AFTER + 2):
        assert h.poller.run_once() is False
    assert h.fake.now - 1000.0 < GIVE_UP_SECONDS
    h.assert_done()


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400), ("InternalFailure", 500)])
def test_retryable_errors_never_end_the_loop(code, status):
    h = Harness()
    for _ in range(20):
        h.add_poll_error(code, status)
    for _ in range(20):
        assert h.poller.run_once() is False
    assert h.fake.now - 1000.0 > GIVE_UP_SECONDS
    h.assert_done()


def test_a_good_poll_between_resets_the_count_and_the_clock():
    h = Harness()
    for _ in range(7):
        h.add_poll_error("UnknownResourceFault")
    h.add_empty_poll()
    for _ in range(6):
        h.add_poll_error("UnknownResourceFault")
    for _ in range(14):
        h.poller.run_once()  # never raises: neither run of errors reached both bounds
    h.assert_done()


def test_missing_credentials_give_up_too_once_they_last():
    """No credentials at all: this machine's setup. After GIVE_UP_SECONDS (an IMDS hiccup is spared), say so."""
    h = Harness()

    def poll_once():
        raise swf.ConfigError("PollForActivityTask: no AWS credentials found: set AWS_ACCESS_KEY_ID ...")

    h.poller.poll_once = poll_once
    count, gave_up = polls_until_it_gives_up(h)
    assert "no AWS credentials found" in str(gave_up)
    assert h.fake.now - 1000.0 >= GIVE_UP_SECONDS


def test_an_outage_is_retried_within_seconds_and_throttling_backs_off_further():
    """An endpoint back from an outage is polled again within POLL_RETRY_CAP; a throttled fleet waits longer."""
    h = Harness()
    for _ in range(12):
        h.add_poll_error("ServiceUnavailable", 503)
    for _ in range(12):
        assert h.poller.run_once() is False
    assert max(h.fake.sleeps) == POLL_RETRY_CAP  # rng 1.0: each pause its ceiling, capped
    assert h.fake.sleeps[:4] == [0.5, 1.0, 2.0, 4.0]
    throttled = Harness()
    for _ in range(12):
        throttled.add_poll_error("ThrottlingException")
    for _ in range(12):
        assert throttled.poller.run_once() is False
    assert max(throttled.fake.sleeps) == THROTTLED_POLL_RETRY_CAP
