"""Printing results: plain aligned tables for people, JSON for programs."""

from __future__ import annotations

import datetime
import json
import sys

from caravand.timespec import format_time
from caravand.values import attributes_of


def _json_default(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dump_json(data, stream=None) -> None:
    """SWF responses as JSON; datetimes become ISO 8601 strings."""
    stream = stream or sys.stdout
    json.dump(data, stream, default=_json_default, indent=2, sort_keys=True)
    stream.write("\n")


def table(headers: list[str], rows: list[list[str]], stream=None) -> None:
    """A plain table: a header line, then one line a row, columns aligned."""
    stream = stream or sys.stdout
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        stream.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        stream.write("\n")


def fields(pairs: list[tuple[str, object]], stream=None) -> None:
    """``Label:  value`` lines, labels aligned; None values are left out."""
    stream = stream or sys.stdout
    pairs = [(label, value) for label, value in pairs if value is not None and value != ""]
    width = max((len(label) for label, _ in pairs), default=0) + 1
    for label, value in pairs:
        if isinstance(value, datetime.datetime):
            value = format_time(value)
        # A value of several lines (a traceback in a failure's details) stays under its label.
        value = str(value).replace("\n", "\n" + " " * (width + 1))
        stream.write(f"{label + ':':<{width}} {value}\n")


def compact_json(data) -> str:
    """``data`` as JSON on one line, keys sorted, non-ASCII kept as it is."""
    return json.dumps(data, default=_json_default, sort_keys=True, ensure_ascii=False)


def events(history: list[dict], stream=None) -> None:
    """History events as a table: id, time, type, and the event's attributes as JSON on one line."""
    table(
        ["ID", "TIME", "TYPE", "ATTRIBUTES"],
        [
            [
                event["eventId"],
                format_time(event.get("eventTimestamp")),
                event["eventType"],
                compact_json(attributes_of(event)),
            ]
            for event in history
        ],
        stream,
    )
