"""caravand's Prometheus metrics: the families (defined once), their directory, the recorder, the server.

Multiprocess mode (prometheus_client): every process writes its values
into files of one private directory, ``PROMETHEUS_MULTIPROC_DIR``, and the
metrics child (caravand.child.MetricsProcess) sums them at each scrape.
The variable must be set before anything imports prometheus_client (it
picks its value class at import): ``prepare()`` does it in the master's
``main``, before the master is imported, so that every child inherits it.
This module therefore imports prometheus_client only inside functions.

Who writes what:

- the children (``Recorder``, the poll loop's hooks; ``count_api_calls``,
  botocore's events on each SWF client): polls, tasks, decisions, SWF calls;
  counters and histograms, whose files outlive their process, so a child
  that died still counts;
- the master (``Families`` gauges with a ``live*`` mode, and its own
  counters): children by state, restarts, pool states, heartbeat ages,
  reloads; ``mark_process_dead`` on every reap drops a dead process's live
  gauges.

Labels are bounded: pool, kind, domain, task_list, the workflow or activity
type and version, the outcome or reason words of the code, the SWF
operation and error code.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from caravand.poller import Hooks
from caravand.swf import CaravanError, ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "caravand-metrics-"
PATH = "/metrics"
#: A scraper's connection that sends or reads nothing for this long is closed (its thread ends).
CONNECTION_TIMEOUT = 10.0
#: Long polls last up to 60 s (70 s with the read margin); an empty one on the emulator 1 s.
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 70.0)
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


# -- the directory


def make_private_dir(prefix: str, pid: int) -> str:
    """A new private directory ``PREFIX<pid>-...``, after removing those a dead master left behind.

    Under systemd it lives in the unit's RuntimeDirectory (wiped at stop);
    else in the temporary directory, where a master killed outright leaves
    its own behind: the next master removes those whose master is gone.
    """
    parent = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or tempfile.gettempdir()
    try:
        names = os.listdir(parent)
    except OSError:
        names = []
    for name in names:
        owner = name[len(prefix) :].partition("-")[0]
        if name.startswith(prefix) and owner.isdigit() and not pid_alive(int(owner)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{prefix}{pid}-", dir=parent)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def prepare(pid: int) -> str | None:
    """Make this master's (empty) metrics directory and point ``PROMETHEUS_MULTIPROC_DIR`` at it.

    None, and metrics stay off, if prometheus_client is imported already
    (a master run inside another program): it would keep its values in
    memory, and an endpoint would show none of them.
    """
    if "prometheus_client" in sys.modules:
        log.warning("metrics: off (prometheus_client was imported before caravand could set %s)", ENV)
        return None
    try:
        path = make_private_dir(DIR_PREFIX, pid)
    except OSError as exc:  # a full or read-only disk, a RuntimeDirectory of another user
        raise CaravanError(
            f"metrics: cannot make its directory in {exc.filename or tempfile.gettempdir()}: {exc.strerror} "
            "(set metrics_bind empty to run without metrics)"
        ) from None
    os.environ[ENV] = path
    return path


def remove_dir() -> None:
    path = os.environ.pop(ENV, None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


def enabled() -> bool:
    """True in a master that serves metrics, and in its children."""
    return bool(os.environ.get(ENV))


def process_dead(pid: int) -> None:
    """``pid`` was reaped: its live gauges go (its counters and histograms stay counted)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# -- the families


class Families:
    """Every metric family of caravand, in ``registry`` (the default one if None)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        where = ("pool", "kind", "domain", "task_list")
        # -- written by the children
        self.polls = Counter(
            "caravand_polls", "Polls by result: task, empty, error, throttled", [*where, "result"], registry=reg
        )
        self.poll_duration = Histogram(
            "caravand_poll_duration_seconds",
            "Time a poll took, its history pages included",
            ["pool", "kind"],
            buckets=POLL_BUCKETS,
            registry=reg,
        )
        self.tasks = Counter(
            "caravand_tasks",
            "Tasks handled, by workflow or activity type and outcome "
            "(completed, failed, canceled, workflow-failed, stale, unknown-type, error, respond-failed, "
            "abandoned, worker-shutdown)",
            [*where, "type", "version", "outcome"],
            registry=reg,
        )
        self.task_duration = Histogram(
            "caravand_task_duration_seconds",
            "Time from a task's arrival to its answer",
            ["pool", "kind", "type", "version"],
            buckets=TASK_BUCKETS,
            registry=reg,
        )
        self.decisions = Counter(
            "caravand_decisions", "Decisions sent, by decision type", ["pool", "decision_type"], registry=reg
        )
        self.api_calls = Counter("caravand_swf_calls", "SWF API calls, by operation", ["operation"], registry=reg)
        self.api_errors = Counter(
            "caravand_swf_errors",
            "SWF API calls that failed, by operation and error code (ThrottlingException: throttled)",
            ["operation", "code"],
            registry=reg,
        )
        # -- written by the master alone: its live gauges go with it
        self.children = Gauge(
            "caravand_children",
            "Children by pool and state (booting, idle, polling, paging, working)",
            ["pool", "state"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.target = Gauge(
            "caravand_pool_target_children",
            "Children the pool is to have",
            ["pool"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.min_children = Gauge(
            "caravand_pool_min_children",
            "The fewest children the pool may have (processes, or MIN of MIN..MAX)",
            ["pool"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.max_children = Gauge(
            "caravand_pool_max_children",
            "The most children the pool may have (processes, or MAX of MIN..MAX)",
            ["pool"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.backlog = Gauge(
            "caravand_pool_backlog",
            "Tasks waiting on the pool's task list at the last count (CountPending*Tasks); NaN: not known",
            ["pool"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.scale_steps = Counter(
            "caravand_scale_steps",
            "Moves of a pool's target: direction up or down, reason backlog, idle, ttin, ttou",
            ["pool", "direction", "reason"],
            registry=reg,
        )
        self.restarts = Counter(
            "caravand_child_restarts",
            "Children that ended while their pool served, by reason (crash, hung, recycle, reload, scale, endpoint)",
            ["pool", "reason"],
            registry=reg,
        )
        self.pool_state = Gauge(
            "caravand_pool_state",
            "1 for the state the pool is in (starting, running, backoff, fatal, stopping), 0 for the others",
            ["pool", "state"],
            multiprocess_mode="livemax",
            registry=reg,
        )
        self.heartbeat_age = Gauge(
            "caravand_oldest_heartbeat_age_seconds",
            "Seconds since the pool's quietest child last said anything",
            ["pool"],
            multiprocess_mode="livemax",
            registry=reg,
        )
        self.master_info = Gauge(
            "caravand_master_info",
            "The master's version and ini (always 1)",
            ["version", "config"],
            multiprocess_mode="livemax",
            registry=reg,
        )
        self.reloads = Counter("caravand_reloads", "Reloads (HUP), by result: ok, refused", ["result"], registry=reg)
        self.last_reload = Gauge(
            "caravand_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration applied (the start, or the last reload that was ok)",
            multiprocess_mode="livemax",
            registry=reg,
        )


_families: Families | None = None


def families() -> Families:
    """The families of this process, in the default registry: built once (fork keeps them)."""
    global _families
    if _families is None:
        _families = Families()
    return _families


# -- the children's recording


class Recorder(Hooks):
    """Poll loop hooks that count polls, tasks and decisions of one pool."""

    def __init__(self, pool: str, kind: str, domain: str, task_list: str, metrics: Families | None = None):
        self.metrics = metrics or families()
        self.pool = pool
        self.kind = kind
        self.where = {"pool": pool, "kind": kind, "domain": domain, "task_list": task_list}
        self.in_hand = None  # the task being handled, if any
        self.counted_in_hand = False  # ...and already counted (failed at a stop's deadline)

    def poll_result(self, poller, result: str, seconds: float) -> None:
        self.metrics.polls.labels(**self.where, result=result).inc()
        self.metrics.poll_duration.labels(self.pool, self.kind).observe(seconds)

    def task_started(self, poller, task, deadline) -> None:
        self.in_hand, self.counted_in_hand = task, False

    def task_failed_at_shutdown(self, outcome: str = "worker-shutdown") -> None:
        """The child failed its task in hand at a stop's deadline (another thread), and exits: count it once."""
        task = self.in_hand
        if task is None or self.counted_in_hand:
            return
        self.counted_in_hand = True
        name, version = task_type(task)
        self.metrics.tasks.labels(**self.where, type=name, version=version, outcome=outcome).inc()

    def task_ended(self, poller, task, outcome: str, seconds: float) -> None:
        counted, self.in_hand, self.counted_in_hand = self.counted_in_hand and task is self.in_hand, None, False
        if counted:
            return  # its worker-shutdown was counted; what the loop says of it after is no second outcome
        name, version = task_type(task)
        self.metrics.tasks.labels(**self.where, type=name, version=version, outcome=outcome).inc()
        self.metrics.task_duration.labels(self.pool, self.kind, name, version).observe(seconds)
        for decision in getattr(task, "decisions", None) or ():
            self.metrics.decisions.labels(self.pool, str(decision.get("decisionType", "unknown"))).inc()


def task_type(task) -> tuple[str, str]:
    """(name, version) of a decision task's workflow type or an activity task's type."""
    for name, version in (("workflow_type", "workflow_version"), ("activity_type", "activity_version")):
        if hasattr(task, name):
            return str(getattr(task, name)), str(getattr(task, version))
    return "unknown", "unknown"


def count_api_calls(client, metrics: Families | None = None) -> None:
    """Count each SWF call of ``client`` (its retries are one call), and its error code if it failed.

    ``after-call`` comes with SWF's answer, an error one too; ``after-call-error``
    when no answer came (connection refused, read timeout): the exception's name is its code.
    """
    counted = metrics or families()

    def after_call(model, parsed=None, **kwargs):
        counted.api_calls.labels(model.name).inc()
        error = (parsed or {}).get("Error") if isinstance(parsed, dict) else None
        if error:
            counted.api_errors.labels(model.name, str(error.get("Code") or "unknown")).inc()

    def after_call_error(event_name, exception=None, **kwargs):
        # botocore gives this event no operation model: the operation ends its name
        # (after-call-error.swf.PollForActivityTask). A handler that raised here would
        # replace the network error with a TypeError that ends the child.
        operation = event_name.rsplit(".", 1)[-1]
        counted.api_calls.labels(operation).inc()
        counted.api_errors.labels(operation, type(exception).__name__).inc()

    client.meta.events.register("after-call.swf", after_call)
    client.meta.events.register("after-call-error.swf", after_call_error)


# -- the endpoint


def bind(address: str) -> socket.socket:
    """The listening socket of ``metrics_bind`` (HOST:PORT); ConfigError (exit 78) if it cannot be bound."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, where = infos[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"metrics_bind {address}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"metrics_bind {address}: {exc.strerror} (another caravand? choose a free port, or set "
            "metrics_bind empty to turn metrics off)"
        ) from None
    return sock


def make_app(clock=None):
    """The WSGI app of ``/metrics``: every process's files, summed (MultiProcessCollector).

    One scrape at a time: before it reads, the files of dead processes are
    folded into one archive (``archive_dead``) at most every ARCHIVE_INTERVAL.
    """
    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    metrics_app = make_wsgi_app(registry)
    # A scrape must never see a dead process's values twice or not at all:
    # archiving and reading take turns (scrapes are rare and quick).
    lock = threading.Lock()
    clock = clock or time.monotonic
    next_archive = 0.0

    def app(environ, start_response):
        nonlocal next_archive
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"caravand serves /metrics\n"]
        with lock:
            if clock() >= next_archive:
                next_archive = clock() + ARCHIVE_INTERVAL
                try:
                    archive_dead(os.environ[ENV])
                except OSError as exc:  # a full disk: the scrape still answers, from the files as they are
                    log.error("metrics: cannot archive dead processes' files: %s", exc)
            return list(metrics_app(environ, start_response))

    return app


#: The metrics child folds dead processes' files into the archive at most this often.
ARCHIVE_INTERVAL = 60.0
#: The files of counters and histograms: one per process, kept after it dies (its counts must stay).
ARCHIVED_KINDS = ("counter", "histogram")
ARCHIVE_NAME = "archive"


def archive_dead(path: str, alive=None) -> int:
    """Fold the counter and histogram files of dead processes into one archive file per kind; how many went.

    prometheus_client keeps a file per process for ever, so that the counts
    of a dead child stay; with recycling and autoscaling, a master that runs
    for months leaves tens of thousands, and every scrape reads them all.
    Here each kind's dead files are summed into ``<kind>_archive.db`` (a
    new file renamed over the old: a scrape reads the old or the new) and
    removed. The sum is by the files' own keys (a metric, its labels), as
    the collector sums them: bucket by bucket for a histogram. Written by
    hand: prometheus_client has no compaction of its own.

    Only the process that serves scrapes may call it, between scrapes.
    """
    from prometheus_client.mmap_dict import MmapedDict

    alive = alive or pid_alive
    folded = 0
    for kind in ARCHIVED_KINDS:
        archive = os.path.join(path, f"{kind}_{ARCHIVE_NAME}.db")
        dead = []
        for name in os.listdir(path):
            stem, _, pid = name.removesuffix(".db").rpartition("_")
            if stem == kind and name.endswith(".db") and pid.isdigit() and not alive(int(pid)):
                dead.append(os.path.join(path, name))
        if not dead:
            continue
        totals: dict[str, float] = {}
        for file in ([archive] if os.path.exists(archive) else []) + dead:
            for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(file):
                totals[key] = totals.get(key, 0.0) + value
        fresh = os.path.join(path, f"{kind}_{ARCHIVE_NAME}.tmp")  # no .db: the collector never reads it half-made
        merged = MmapedDict(fresh)
        try:
            for key, value in totals.items():
                merged.write_value(key, value, 0.0)
        finally:
            merged.close()
        os.replace(fresh, archive)
        for file in dead:
            os.unlink(file)
        folded += len(dead)
    return folded


#: At most this many connections are served at once; more are closed at once (a flood costs no thread).
MAX_CONNECTIONS = 16


def serve(sock: socket.socket) -> None:
    """Serve ``/metrics`` on the listening ``sock`` forever: a thread per connection, each with a timeout."""
    from wsgiref.simple_server import WSGIRequestHandler

    from prometheus_client.exposition import ThreadingWSGIServer

    class Handler(WSGIRequestHandler):
        timeout = CONNECTION_TIMEOUT  # a silent or slow scraper loses its connection, never the others'

        def log_message(self, format, *args):
            pass

    class Server(ThreadingWSGIServer):
        """prometheus_client's threading server, with a cap on the threads a flood of connections could make."""

        slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

        def process_request(self, request, client_address):
            if not self.slots.acquire(blocking=False):
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:  # no thread started: its slot is free again
                self.slots.release()
                raise

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_name, server.server_port = str(sock.getsockname()[0]), sock.getsockname()[1]
    server.setup_environ()
    server.set_app(make_app())
    server.serve_forever()
