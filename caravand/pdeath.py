"""Dying with one's parent: Linux's PR_SET_PDEATHSIG, through ctypes.

Written by hand: it is one prctl(2) call, which the standard library lacks
and for which no small, well-kept library exists (python-prctl needs a C
build and libcap).
"""

from __future__ import annotations

import ctypes
import os

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` when our parent dies; False where that is impossible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def parent_is(pid: int) -> bool:
    """True while ``pid`` is still our parent (after its death we are re-parented)."""
    return os.getppid() == pid
