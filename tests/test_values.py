"""SWF's values as caravand reads them (caravand.values)."""

from __future__ import annotations

import pytest

from caravand.values import NONE, is_none, timeout_seconds


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
