"""The embedded local SWF endpoint: a moto server bound to 127.0.0.1.

There is no SWF to run locally, so the demo and the end-to-end tests use
moto's emulator, served over real HTTP so that caravand, caravanctl and the
AWS CLI talk to it as they would talk to SWF. Two ways to run it:

- :func:`serve` runs it in this process, in the foreground, until SIGTERM or
  SIGINT (``caravanctl local-endpoint``, ``python -m caravand.embedded``);
- :class:`EmbeddedEndpoint` runs it as a child process and manages its life:
  start on a given or free port, wait until it answers, reset, release its
  held polls (SIGUSR2), stop.

Where moto departs from SWF (no long polls, tasks delivered twice, activity
timeouts, a leak, no state across restarts), :mod:`caravand.emulator` mends
it; this module runs the process.

moto is an optional dependency (the ``local`` extra): importing it is
deferred so that production installs never need it.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import logging
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
from caravand.swf import SWF_POLL_HOLD, ConfigError, UsageError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
READY_PREFIX = "caravand-embedded-endpoint listening on "
#: A warning the endpoint gives its parent (a discarded state file), on stdout before READY_PREFIX.
WARNING_PREFIX = "caravand-embedded-endpoint warning: "
#: The signal that answers every held poll empty (EmbeddedEndpoint.release_polls).
RELEASE_SIGNAL = signal.SIGUSR2
#: GET: the polls held now, as JSON ``{"held": {"DOMAIN/decision|activity/LIST": count}}``.
HELD_POLLS_PATH = "/caravand/held-polls"
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


def with_held_polls(app, machine):
    """``app``, answering GET HELD_POLLS_PATH itself: what a test waits on before it schedules or releases."""

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") != HELD_POLLS_PATH:
            return app(environ, start_response)
        body = json.dumps({"held": machine.held_polls()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return wsgi


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


def serve(
    port: int = 0,
    *,
    verbose: bool = False,
    announce=None,
    poll_hold: float = SWF_POLL_HOLD,
    state: str | None = None,
    warn=None,
) -> int:
    """Serve in the foreground until SIGTERM or SIGINT; return an exit code.

    ``announce(url)`` is called once the socket listens. Request logging goes
    to stderr only when ``verbose``. An empty poll is held up to
    ``poll_hold`` seconds; SIGUSR2 answers the held ones empty. With
    ``state``, the SWF state is loaded from that file at start and saved to
    it (see caravand.emulator); ``warn(message)`` says why a file was
    discarded (default: to stderr).
    """
    from caravand import emulator

    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
    if warn is None:
        warn = lambda message: print(f"warning: {message}", file=sys.stderr, flush=True)  # noqa: E731
    # The handlers do nothing: Python writes each signal's number to the
    # wakeup pipe, which the main thread reads. No lock is taken in a handler.
    wakeup_read, wakeup_write = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(wakeup_write, False)

    # Every thread made while the server is built (moto's, the server's, the
    # emulator's tick, and the request and timer threads those start) leaves
    # the signals to the main thread, which waits on the pipe; what comes
    # meanwhile is delivered when the block ends.
    with blocked():
        for signum in (signal.SIGTERM, signal.SIGINT, RELEASE_SIGNAL):
            signal.signal(signum, lambda signum, frame: None)
        signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
        server = _make_server(port)
        machine = emulator.install(poll_hold)
        server.app = with_held_polls(server.app, machine)
        if state:
            problem = machine.load(state)
            if problem:
                warn(problem)
            machine.state_path = state
        machine.start_ticker()
        url = f"http://{HOST}:{server.server_address[1]}"
        set_title(url)
        threading.Thread(target=server.serve_forever, name="embedded-swf", daemon=True).start()
    (announce or (lambda u: None))(url)
    while True:
        signums = set(os.read(wakeup_read, 64))
        if signums & {signal.SIGTERM, signal.SIGINT}:
            break
        if RELEASE_SIGNAL in signums:
            machine.release_polls()
    machine.release_polls(forever=True)  # the server waits for its requests: no poll is held now
    server.shutdown()
    server.server_close()
    try:
        machine.stop()  # the state's last save
    except OSError as exc:
        warn(f"embedded_state {state}: cannot save it: {exc}")
    sys.stdout.flush()
    sys.stderr.flush()
    # moto schedules SWF timers on threads (a 5-minute demo timer would hold
    # the exit for 5 minutes, were they not daemons): nothing of theirs must outlive us.
    os._exit(0)


class EmbeddedEndpoint:
    """The local SWF endpoint as a supervised child process.

    ``start()`` spawns ``python -m caravand.embedded``, reads the URL it
    announces and waits until it answers HTTP; ``stop()`` sends SIGTERM and
    escalates to SIGKILL. The process is found by PID, never by name.

    It holds an empty poll up to ``poll_hold`` seconds (SWF: 60; a master
    passes its ``poll_timeout``, which its clients' read timeouts follow),
    and keeps its SWF state in the file ``state``, if given, across restarts.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        poll_hold: float = SWF_POLL_HOLD,
        state: str | None = None,
        python: str = sys.executable,
        verbose: bool = False,
    ):
        self.port = port
        self.poll_hold = poll_hold
        self.state = state
        self.python = python
        self.verbose = verbose
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.warnings: list[str] = []  # what the process said before it listened (a discarded state file)

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
        command += ["--poll-hold", f"{self.poll_hold:g}"]
        if self.state:
            command += ["--state", self.state]
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
        while line.startswith(WARNING_PREFIX):  # said just before it listens: the next line follows at once
            warning = line[len(WARNING_PREFIX) :].strip()
            log.warning("embedded SWF endpoint: %s", warning)
            self.warnings.append(warning)
            line = self.process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            return None
        self.url = line[len(READY_PREFIX) :].strip()
        return self.url

    def held_polls(self) -> dict[str, int]:
        """The polls the endpoint holds now, by ``domain/kind/task list``."""
        with urllib.request.urlopen(f"{self.url}{HELD_POLLS_PATH}", timeout=5) as response:
            return json.load(response)["held"]

    def release_polls(self) -> None:
        """Have the endpoint answer every poll it holds empty, at once (SIGUSR2); never blocks.

        For a stop: the children stop after their poll in flight, which a
        60 s hold would make a 60 s stop. Harmless if the process is gone.
        """
        if self.process is None or self.process.returncode is not None:  # never poll(): the master reaps it
            return
        try:
            os.kill(self.process.pid, RELEASE_SIGNAL)
        except ProcessLookupError:
            pass

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


def hold_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= SWF_POLL_HOLD:
        raise argparse.ArgumentTypeError(f"{value!r} is not a poll hold: expected seconds, more than 0, at most 60")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """``python -m caravand.embedded``: the endpoint in the foreground, titled ``caravand: endpoint HOST:PORT``."""
    parser = argparse.ArgumentParser(
        prog="python -m caravand.embedded", description="Run the local SWF endpoint (moto) on 127.0.0.1."
    )
    parser.add_argument("--port", type=port_number, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--parent", type=int, help="stop when this process (our parent) dies")
    parser.add_argument(
        "--poll-hold",
        type=hold_seconds,
        default=SWF_POLL_HOLD,
        metavar="SECONDS",
        help=f"hold an empty poll up to this long, as SWF does (default {SWF_POLL_HOLD:g})",
    )
    parser.add_argument("--state", metavar="PATH", help="keep the SWF state in this file across restarts")
    args = parser.parse_args(argv)
    if args.parent:
        # A master killed with SIGKILL must not leave the endpoint holding its port.
        set_parent_death_signal(signal.SIGTERM)
        if not parent_is(args.parent):
            return 0

    def announce(url: str) -> None:
        print(READY_PREFIX + url, flush=True)

    def warn(message: str) -> None:  # to the parent, which logs it (our stderr may be /dev/null)
        print(WARNING_PREFIX + message, flush=True)

    try:
        return serve(args.port, verbose=args.verbose, announce=announce, poll_hold=args.poll_hold, state=args.state,
                     warn=warn)  # fmt: skip
    except (ConfigError, UsageError) as exc:  # one line; the parent tells the user why (see failure())
        print(f"caravand.embedded: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
