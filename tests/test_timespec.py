"""Times and durations as typed on a command line (caravand.timespec)."""

from __future__ import annotations

import datetime

import pytest

from caravand.timespec import UTC, format_age, format_time, parse_duration, parse_when

NOW = datetime.datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2015-01-01", datetime.datetime(2015, 1, 1, tzinfo=UTC)),
        ("2015-01-01T12:30", datetime.datetime(2015, 1, 1, 12, 30, tzinfo=UTC)),
        ("2015-01-01 12:30:45", datetime.datetime(2015, 1, 1, 12, 30, 45, tzinfo=UTC)),
        (" 2015-01-01T12:30 ", datetime.datetime(2015, 1, 1, 12, 30, tzinfo=UTC)),
        # An offset is honoured and the result converted to UTC.
        ("2015-01-01 12:30:00+02:00", datetime.datetime(2015, 1, 1, 10, 30, tzinfo=UTC)),
        ("2015-01-01T00:30:00-05:00", datetime.datetime(2015, 1, 1, 5, 30, tzinfo=UTC)),
        ("2015-01-01T12:30:00Z", datetime.datetime(2015, 1, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_parse_when_absolute(text, expected):
    when = parse_when(text, now=NOW)
    assert when == expected
    assert when.utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize(
    "text, delta",
    [
        ("90m", datetime.timedelta(minutes=90)),
        ("6h", datetime.timedelta(hours=6)),
        ("2d", datetime.timedelta(days=2)),
        ("1w", datetime.timedelta(weeks=1)),
        ("45s", datetime.timedelta(seconds=45)),
        (" 3 h ", datetime.timedelta(hours=3)),
        # A minus sign says the same (an age counts back from now): `--oldest -1d` means 1d.
        ("-2d", datetime.timedelta(days=2)),
        ("-90m", datetime.timedelta(minutes=90)),
    ],
)
def test_parse_when_relative_to_now(text, delta):
    assert parse_when(text, now=NOW) == NOW - delta


def test_parse_when_relative_defaults_to_the_current_time():
    before = datetime.datetime.now(UTC)
    when = parse_when("1d")
    after = datetime.datetime.now(UTC)
    assert before - datetime.timedelta(days=1) <= when <= after - datetime.timedelta(days=1)
    assert when.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "2015-13-01", "2015-01-32", "90x", "-2", "+2d", "--2d", "2.5h", "600", "1d2h", "2015/01/01", "d"],
)
def test_parse_when_rejects_other_forms(text):
    with pytest.raises(ValueError) as info:
        parse_when(text, now=NOW)
    message = str(info.value)
    assert repr(text) in message
    # The message says what is accepted.
    assert "ISO date" in message and "2d" in message


@pytest.mark.parametrize("text", ["99999999d", "9999999999w", "99999999999999999999s"])
def test_parse_when_too_far_back_is_a_value_error(text):
    """Not an OverflowError (a traceback in caravanctl): a ValueError that says what to give."""
    with pytest.raises(ValueError, match="too far back: give a date instead"):
        parse_when(text, now=NOW)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("600", 600),
        ("0", 0),
        ("45s", 45),
        ("10m", 600),
        ("6h", 21600),
        ("2d", 172800),
        ("1w", 604800),
        (" 5 m ", 300),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5", "1.5h", "10 minutes", "1h30m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "age, expected",
    [
        (datetime.timedelta(seconds=0), "0s"),
        (datetime.timedelta(seconds=45), "45s"),
        (datetime.timedelta(seconds=59), "59s"),
        (datetime.timedelta(seconds=60), "1m"),
        (datetime.timedelta(minutes=12, seconds=59), "12m"),
        (datetime.timedelta(hours=3, minutes=59), "3h"),
        (datetime.timedelta(days=2, hours=23), "2d"),
        (datetime.timedelta(days=400), "400d"),
        # A start in the future (clock skew) is never a negative age.
        (datetime.timedelta(seconds=-30), "0s"),
    ],
)
def test_format_age(age, expected):
    assert format_age(NOW - age, now=NOW) == expected


def test_format_age_and_time_of_none_are_empty():
    assert format_age(None, now=NOW) == ""
    assert format_time(None) == ""


def test_format_time_is_utc_to_the_second():
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert format_time(datetime.datetime(2026, 11, 27, 10, 14, 1, 999999, tzinfo=paris)) == "2026-11-27 09:14:01Z"
