"""SWF's values as caravand reads them: timeouts that may be "NONE", a history event's attributes.

Plain functions without boto3, shared by the authoring API (workflow,
activity), the pollers and caravanctl's output.
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
