"""The embedded local SWF endpoint: a moto server bound to 127.0.0.1.

There is no SWF to run locally, so the demo and the end-to-end tests use
moto's emulator, served over real HTTP so that caravand, caravanctl and the
AWS CLI talk to it as they would talk to SWF. Two ways to run it:

- :func:`serve` runs it in this process, in the foreground, until SIGTERM or
  SIGINT (``caravanctl local-endpoint``, ``python -m caravand.embedded``);
- :class:`EmbeddedEndpoint` runs it as a child process and manages its life:
  start on a given or free port, wait until it answers, reset, stop.

moto is an optional dependency (the ``local`` extra): importing it is
deferred so that production installs never need it.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from caravand.pdeath import parent_is, set_parent_death_signal
from caravand.sigmask import blocked
from caravand.swf import ConfigError, UsageError

HOST = "127.0.0.1"
READY_PREFIX = "caravand-embedded-endpoint listening on "
INSTALL_HINT = "the embedded SWF endpoint needs moto: pip install 'caravand[local]'"
#: What changes the port when caravand runs the endpoint (``endpoint_url = embedded``).
PORT_SETTING = "set embedded_port in [caravand] to a free port"


class PortUnavailable(ConfigError):
    """The endpoint cannot listen on its port (in use, or privileged): the setting or flag naming it must change.

    A configuration error (78) wherever the port comes from: a flag or a
    setting that names a resource that cannot be had.
    """


def why_unavailable(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another process listens there)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


def port_problem(port: int) -> str | None:
    """Why ``port`` cannot be listened on right now, or None if it can (a probe: bound, then closed)."""
    if not port:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            return why_unavailable(exc)
    return None


def set_title(url: str) -> None:
    """``caravand: endpoint 127.0.0.1:4599``, so that ``ps | grep 'caravand:'`` shows it beside the master."""
    try:
        import setproctitle
    except ImportError:  # a dependency of caravand; a title is only a convenience
        return
    setproctitle.setproctitle(f"caravand: endpoint {url.removeprefix('http://')}")


def patch_moto() -> None:
    """Mend the emulator where it breaks on what real SWF accepts. Idempotent.

    moto 5.2 answers HTTP 500 to a SignalWorkflowExecution without ``input``
    (the seed's own ``caravan-signal -s STOP`` sends none): give it the
    missing key, as null. It also dates every described execution
    2015-01-01, and gives a terminated or timed-out execution no close
    time. All mended in this process only.
    """
    from moto.core.utils import unix_time
    from moto.swf.models.workflow_execution import WorkflowExecution
    from moto.swf.responses import SWFResponse

    if getattr(SWFResponse, MENDED, False):
        return
    original = SWFResponse.signal_workflow_execution

    def signal_workflow_execution(self):
        params = json.loads(self.body)
        if "input" not in params:
            params["input"] = None
            self.body = json.dumps(params)
        return original(self)

    mend(SWFResponse, signal_workflow_execution=signal_workflow_execution)

    # It also describes every execution as started on 2015-01-01: give the real time.
    medium = WorkflowExecution.to_medium_dict

    def to_medium_dict(self):
        described = medium(self)
        if self.start_timestamp:
            described["startTimestamp"] = self.start_timestamp
        return described

    # A terminated or timed-out execution has no close time (SWF lists it with one).
    terminate, timeout = WorkflowExecution.terminate, WorkflowExecution.timeout

    def terminate_with_time(self, *args, **kwargs):
        terminate(self, *args, **kwargs)
        self.close_timestamp = self.close_timestamp or unix_time()

    def timeout_with_time(self, _timeout):
        timeout(self, _timeout)
        self.close_timestamp = self.close_timestamp or _timeout.timestamp

    mend(WorkflowExecution, to_medium_dict=to_medium_dict, terminate=terminate_with_time, timeout=timeout_with_time)


#: The mark of a moto class whose methods :func:`mend` replaced.
MENDED = "caravand_mended"


def mend(cls: type, **methods: Callable) -> None:
    """Put ``methods`` in place of moto's own of ``cls`` (in this process only), and mark ``cls`` mended."""
    for name, method in methods.items():
        setattr(cls, name, method)
    setattr(cls, MENDED, True)


def _make_server(port: int):
    """Bind a threaded werkzeug server running moto's dispatcher (port 0: any free port)."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    # Bind the socket here: werkzeug reports a taken port by printing two
    # lines and calling sys.exit(), which we would rather say in one line.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise PortUnavailable(f"cannot listen on {HOST}:{port}: {why_unavailable(exc)}") from None
    patch_moto()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(HOST, listener.getsockname()[1], app, threaded=True, fd=listener.fileno())
    listener.detach()  # the server's socket now owns the descriptor
    return server


def export_lines(url: str) -> list[str]:
    """Shell lines that point boto3 (caravanctl, caravan-*, aws) at ``url``.

    The emulator checks no credentials, but boto3 must find some to sign.
    """
    return [
        f"export AWS_ENDPOINT_URL_SWF={url}",
        "export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}",
        "export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-caravand}",
        "export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-caravand}",
    ]


def serve(port: int = 0, *, verbose: bool = False, announce=None) -> int:
    """Serve in the foreground until SIGTERM or SIGINT; return an exit code.

    ``announce(url)`` is called once the socket listens. Request logging goes
    to stderr only when ``verbose``.
    """
    import logging

    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    # Every thread made while the server is built (moto's, the server's, and
    # the request threads those start) leaves TERM and INT to the main
    # thread, which waits in stop.wait() and stops the server; what comes
    # meanwhile is delivered when the block ends.
    with blocked():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        server = _make_server(port)
        url = f"http://{HOST}:{server.server_address[1]}"
        set_title(url)
        threading.Thread(target=server.serve_forever, name="embedded-swf", daemon=True).start()
    (announce or (lambda u: None))(url)
    stop.wait()
    server.shutdown()
    server.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    # moto schedules SWF timers on non-daemon threads (a 5-minute demo timer
    # would hold the exit for 5 minutes): nothing of theirs must outlive us.
    os._exit(0)


class EmbeddedEndpoint:
    """The local SWF endpoint as a supervised child process.

    ``start()`` spawns ``python -m caravand.embedded``, reads the URL it
    announces and waits until it answers HTTP; ``stop()`` sends SIGTERM and
    escalates to SIGKILL. The process is found by PID, never by name.
    """

    def __init__(self, port: int = 0, *, python: str = sys.executable, verbose: bool = False):
        self.port = port
        self.python = python
        self.verbose = verbose
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and return its URL once it answers."""
        stdout = self.launch()
        # The child prints its URL only once its socket listens; a child that
        # dies first (port taken, moto missing) closes stdout instead.
        readable, _, _ = select.select([stdout], [], [], timeout)
        url = self.read_ready_line() if readable else None
        if url is None:
            self.stop()
            raise self.failure()
        self.wait_ready(timeout)
        return url

    def failure(self) -> ConfigError:
        """Why the process died before it listened, as well as the parent can tell (its stderr is not ours)."""
        assert self.process is not None  # called once the process launched and died
        problem = port_problem(self.port)
        if problem:
            return PortUnavailable(
                f"embedded SWF endpoint: cannot listen on {HOST}:{self.port}: {problem}: {PORT_SETTING}"
            )
        if importlib.util.find_spec("moto") is None:
            return ConfigError(INSTALL_HINT)
        return ConfigError(
            f"embedded SWF endpoint failed to start on port {self.port} (exit {self.process.returncode}); "
            f"see why with: {self.python} -m caravand.embedded --port {self.port} --verbose"
        )

    def launch(self):
        """Spawn the server process; returns its stdout, where it announces its URL (see read_ready_line)."""
        command = [self.python, "-m", "caravand.embedded", "--port", str(self.port), "--parent", str(os.getpid())]
        if self.verbose:
            command.append("--verbose")
        self.url = None
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None if self.verbose else subprocess.DEVNULL,
            text=True,
            # Its own session: a Ctrl-C in the terminal is for the master, which stops it last.
            start_new_session=True,
        )
        return self.process.stdout

    def read_ready_line(self) -> str | None:
        """Once its stdout is readable: the URL it announced (it listens), or None (it closed stdout: dying)."""
        assert self.process is not None and self.process.stdout is not None, "launch() first"
        line = self.process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            return None
        self.url = line[len(READY_PREFIX) :].strip()
        return self.url

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server answers HTTP, or raise after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/config", timeout=2) as response:
                    json.load(response)
                return
            except (OSError, ValueError):
                if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                    raise ConfigError(f"embedded SWF endpoint at {self.url} does not answer") from None
                time.sleep(0.05)

    def reset(self) -> None:
        """Forget every domain, type and execution (moto's reset API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> EmbeddedEndpoint:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def port_number(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port: expected 0 to 65535")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    """``python -m caravand.embedded``: the endpoint in the foreground, titled ``caravand: endpoint HOST:PORT``."""
    parser = argparse.ArgumentParser(
        prog="python -m caravand.embedded", description="Run the local SWF endpoint (moto) on 127.0.0.1."
    )
    parser.add_argument("--port", type=port_number, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--parent", type=int, help="stop when this process (our parent) dies")
    args = parser.parse_args(argv)
    if args.parent:
        # A master killed with SIGKILL must not leave the endpoint holding its port.
        set_parent_death_signal(signal.SIGTERM)
        if not parent_is(args.parent):
            return 0

    def announce(url: str) -> None:
        print(READY_PREFIX + url, flush=True)

    try:
        return serve(args.port, verbose=args.verbose, announce=announce)
    except (ConfigError, UsageError) as exc:  # one line; the parent tells the user why (see failure())
        print(f"caravand.embedded: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
