"""Times and durations as people type them on a command line.

``parse_when`` takes an ISO date or datetime (``2015-01-01``,
``2015-01-01T12:30``, ``2015-01-01 12:30:00+02:00``) or an age back from now
(``90m``, ``6h``, ``2d``, ``1w``, also written ``-2d``); naive times are
UTC, as SWF's are.
"""

from __future__ import annotations

import datetime
import re

UTC = datetime.timezone.utc
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
#: An age back from now: a duration with its unit, optionally with a minus sign (``-2d`` is ``2d`` ago).
_AGE = re.compile(r"^\s*-?\s*(\d+\s*[smhdw])\s*$")

WHEN_HELP = "an ISO date or datetime (2015-01-01, 2015-01-01T12:30) or an age such as 90m, 6h, 2d"
DURATION_HELP = "seconds, or a number with a unit s, m, h, d or w (such as 600 or 10m)"


def parse_duration(text: str) -> int:
    """``"600"`` or ``"10m"`` -> 600 seconds; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: expected {DURATION_HELP}")
    number, unit = match.groups()
    return int(number) * _UNITS[unit or "s"]


def parse_when(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """An aware UTC datetime for ``text``; ValueError with the accepted forms otherwise."""
    now = now or datetime.datetime.now(UTC)
    age = _AGE.match(text)
    if age:
        try:
            return now - datetime.timedelta(seconds=parse_duration(age.group(1)))
        except OverflowError:
            raise ValueError(f"{text!r} is too far back: give a date instead, such as 2015-01-01") from None
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: expected {WHEN_HELP}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def format_time(when: datetime.datetime | None) -> str:
    """``2026-11-27 09:14:01Z``: UTC, to the second; empty for None."""
    if when is None:
        return ""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_age(when: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """How long ago, in the largest whole unit: ``45s``, ``12m``, ``3h``, ``2d``."""
    if when is None:
        return ""
    now = now or datetime.datetime.now(UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
