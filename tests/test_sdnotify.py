"""systemd's notify protocol (caravand.sdnotify) against a real datagram socket."""

from __future__ import annotations

import os
import socket

import pytest

from caravand.sdnotify import Notifier


@pytest.fixture
def receiver(tmp_path):
    """An AF_UNIX datagram socket bound in tmp_path, as systemd's would be: (NOTIFY_SOCKET, socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2)  # a safety net only: the datagram is there before recv
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_receiver():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"caravand-test-{os.getpid()}-{id(sock)}"
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def test_fields_arrive_as_one_datagram(receiver):
    address, sock = receiver
    notifier = Notifier({"NOTIFY_SOCKET": address})
    try:
        assert notifier.enabled
        assert notifier.fileno() is not None
        assert notifier.notify("READY=1", "STATUS=x") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=x"
        assert notifier.notify("WATCHDOG=1") is True
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        notifier.close()
    assert not notifier.enabled
    assert notifier.notify("STOPPING=1") is False
    notifier.close()  # twice is fine


def test_abstract_socket(abstract_receiver):
    address, sock = abstract_receiver
    notifier = Notifier({"NOTIFY_SOCKET": address})
    try:
        assert notifier.address == "\0" + address[1:]
        assert notifier.notify("READY=1", "STATUS=pools 2/2") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=pools 2/2"
    finally:
        notifier.close()


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_without_notify_socket_it_is_disabled(environ):
    notifier = Notifier(environ)
    assert not notifier.enabled
    assert notifier.fileno() is None
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_interval is None


def test_a_missing_socket_is_a_warning_not_an_error(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    try:
        assert notifier.notify("READY=1") is False
    finally:
        notifier.close()
    assert "sd_notify failed" in caplog.text


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # another process's
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(environ, interval, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    try:
        notifier = Notifier({**environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        assert notifier.watchdog_interval == interval
        notifier.close()
    finally:
        listener.close()


def test_no_watchdog_without_a_notify_socket():
    """WATCHDOG_USEC alone (no NOTIFY_SOCKET): nobody to ping, and the master must not wake for it."""
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval is None
