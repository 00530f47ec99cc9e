"""systemd's notify protocol: one datagram on $NOTIFY_SOCKET.

Written by hand because it is a few lines of the standard library, where
the libraries that wrap it (sdnotify, systemd-python) add a dependency or
a C extension for no gain. See sd_notify(3).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY=1, STATUS=..., WATCHDOG=1, RELOADING=1, STOPPING=1 when under systemd.

    Without $NOTIFY_SOCKET every call is a no-op, so the master calls it
    unconditionally.
    """

    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address or None
        self.socket = None
        if self.address:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = environ.get("WATCHDOG_USEC")
        watchdog_pid = environ.get("WATCHDOG_PID")
        mine = watchdog_pid is None or watchdog_pid == str(os.getpid())
        #: Seconds between WATCHDOG=1 pings (half systemd's timeout), or None.
        # Without a socket nobody listens: no watchdog, and no loop waking for it.
        self.watchdog_interval = int(usec) / 2e6 if self.socket and usec and usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return self.socket is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False if it could not be sent."""
        if self.socket is None:
            return False
        try:
            self.socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
        return True

    def fileno(self) -> int | None:
        return self.socket.fileno() if self.socket else None

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
