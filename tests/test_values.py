"""SWF's values as caravand reads them (caravand.values)."""

from __future__ import annotations

import pytest

from caravand.values import NONE, attributes_of, is_none, timeout_seconds, truncate


@pytest.mark.parametrize("value", ["NONE", "none", " None ", NONE])
def test_none_in_any_case(value):
    assert is_none(value)
    assert timeout_seconds(value) is None


@pytest.mark.parametrize("value", [None, "", "0", "10", 0, "NONEX", "no"])
def test_what_is_not_none(value):
    assert not is_none(value)


@pytest.mark.parametrize(("value", "seconds"), [(None, None), ("300", 300.0), (30, 30.0), ("0", 0.0), (" 10 ", 10.0)])
def test_timeout_seconds(value, seconds):
    assert timeout_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "forever", "10s"])
def test_a_timeout_that_is_neither_seconds_nor_none_is_refused(value):
    with pytest.raises(ValueError):
        timeout_seconds(value)


def test_attributes_of_an_event_are_its_own_dict():
    attributes = {"timerId": "t", "startToFireTimeout": "5"}
    event = {"eventId": 3, "eventType": "TimerStarted", "timerStartedEventAttributes": attributes}
    assert attributes_of(event) is attributes
    assert attributes_of({"eventId": 4, "eventType": "Odd"}) == {}


def test_truncate():
    assert truncate(None, 10) is None
    assert truncate("short", 10) == "short"
    assert truncate(12345, 10) == "12345"
    head = truncate("abcdefghijklmnopqrstuvwxyz", 20)
    assert len(head) == 20 and head.startswith("abcdef") and head.endswith("...[truncated]")
    tail = truncate("abcdefghijklmnopqrstuvwxyz", 20, keep="tail")
    assert len(tail) == 20 and tail.startswith("...[truncated]") and tail.endswith("uvwxyz")
