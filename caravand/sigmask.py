"""Helper threads leave the asynchronous signals to the main thread.

Python runs signal handlers in the main thread only. When the kernel
delivers a signal to another thread (any thread that does not block it may
get it), the handler waits until the main thread next runs Python code; a
main thread blocked in a 60 s poll, or in ``Event.wait()``, does not wake
for it. So a QUIT that must cut a poll, or a TERM to the embedded endpoint,
could wait for a minute, or for ever. Threads started through
:func:`start_quiet` block these signals, so the kernel picks the main thread.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: The signals caravand's processes handle, or that their master sends them.
ASYNC_SIGNALS = frozenset(
    {
        signal.SIGTERM,
        signal.SIGQUIT,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
        signal.SIGCHLD,
    }
)


@contextlib.contextmanager
def blocked(signals=ASYNC_SIGNALS):
    """Block ``signals`` in the calling thread for the ``with`` block; a thread started meanwhile inherits that."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_quiet(thread: threading.Thread) -> threading.Thread:
    """Start ``thread`` with the asynchronous signals blocked in it (they then go to the main thread)."""
    with blocked():
        thread.start()
    return thread
