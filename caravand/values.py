"""SWF's values as caravand reads and writes them: "NONE" timeouts, an event's attributes, text cut to a limit.

Plain functions without boto3, shared by the authoring API (workflow,
activity), the pollers and caravanctl's output. SWF's size limits are
in :mod:`caravand.swf` (``MAX_REASON``, ``MAX_INPUT``...).
"""

from __future__ import annotations

#: SWF's word for "no timeout" (and "no retention").
NONE = "NONE"


def is_none(value) -> bool:
    """True for SWF's ``"NONE"``, in any case and with spaces around it; False for None (unset)."""
    return value is not None and str(value).strip().upper() == NONE


def timeout_seconds(value) -> float | None:
    """An SWF timeout (``"300"``, ``30``, ``"NONE"``) in seconds; None when it is ``"NONE"`` or unset.

    Anything else that is not a number raises ValueError.
    """
    if value is None or is_none(value):
        return None
    return float(value)


def attributes_of(event: dict) -> dict:
    """The ``...EventAttributes`` member of a history event (empty if none)."""
    for key, value in event.items():
        if key.endswith("EventAttributes"):
            return value
    return {}


def truncate(text, limit: int, keep: str = "head") -> str | None:
    """``text`` as a string of at most ``limit`` characters (None stays None).

    ``keep="tail"`` keeps the end instead, as for a traceback, whose last
    lines say what went wrong. Only for a reason or details: a payload (an
    input, result or control) cut short is broken data (see
    ``caravand.workflow.checked_payload``).
    """
    if text is None:
        return None
    text = str(text)
    if len(text) <= limit:
        return text
    marker = "...[truncated]"
    if keep == "tail":
        return marker + text[len(text) - (limit - len(marker)) :]
    return text[: limit - len(marker)] + marker
