"""The master: forks each pool's children, watches them, restarts, reloads, stops.

One thread and one loop, in the manner of gunicorn's arbiter. Signal
handlers only queue the signal (``signal.set_wakeup_fd`` wakes the loop);
the loop reads its children's pipes, handles the queued signals in
``handle_<name>`` methods, reaps the dead, watches deadlines, and brings
every pool to its wanted number of children. Nothing in the loop blocks:
a stop or a reload is a state with a deadline that each pass checks.

A child's life, in the methods that shape it: ``spawn`` -> ``child_said``
(its lines, caravand.protocol, tell what it does: a ChildState) ->
``watch_children`` (overdue: SIGABRT, then SIGKILL) or ``retire`` (SIGTERM,
an expected exit) -> ``reap`` -> ``child_exited`` (a crash moves the pool's
restart state).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import random
import selectors
import shutil
import signal
import socket
import sys
import time
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING

import setproctitle

from caravand import __version__, backlog, metrics, protocol, swf
from caravand import child as child_module
from caravand.autoscale import Autoscaler, Step
from caravand.child import ChildProcess, MetricsProcess, RegistrarProcess, reopen_log_files, reopen_output
from caravand.config import ALARM_MARGIN, Config, PoolSpec, load, setup_logging
from caravand.contracts import optional
from caravand.poller import Backoff
from caravand.sdnotify import Notifier
from caravand.states import ChildState, KillStage, PoolHealth, PoolState

if TYPE_CHECKING:
    import boto3

    from caravand.embedded import EmbeddedEndpoint  # imported when used: only an embedded endpoint needs it

log = logging.getLogger("caravand.master")

SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "CHLD")
#: The loop wakes at least this often, even with nothing to do.
TICK = 1.0
#: How often each child's resident memory is read, when the pool has max_rss_mb.
RSS_INTERVAL = 10.0
#: A registrar (the throwaway process that registers a pool's domain and
#: types) that runs longer than this is killed and tried again later.
REGISTRATION_TIMEOUT = 120.0
#: The master's gauges are written at most this often (see Master.export_metrics).
EXPORT_INTERVAL = 1.0
#: A reload's import check (a throwaway process) that runs longer is killed, and the reload refused.
RELOAD_CHECK_TIMEOUT = 120.0
#: A pass of the loop that took longer than this reads the pipes again
#: before it judges any child silent: the beats wait in the pipes.
LATE_PASS = 0.5
#: A backlog counter that died is forked again after this (doubling to a minute).
COUNTER_BACKOFF = 1.0
#: Why a child ended while its pool served, as caravand_child_restarts_total counts it.
RESTART_REASONS = ("crash", "hung", "recycle", "reload", "scale", "endpoint")
#: The ways a pool's target moves, as caravand_scale_steps_total counts them.
SCALE_REASONS = (("up", "backlog"), ("up", "ttin"), ("down", "idle"), ("down", "ttou"))
#: [caravand] settings that only a restart applies.
RESTART_ONLY = ("preload", "pidfile", "log_file", "metrics_bind", "embedded_state")


class System:
    """The seam to the OS and the clock: tests swap in fakes."""

    fork = staticmethod(os.fork)
    kill = staticmethod(os.kill)
    waitpid = staticmethod(os.waitpid)
    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def rss_mb(pid: int) -> float | None:
        """Current resident memory of ``pid`` in MiB (not its peak), or None if unreadable."""
        try:
            with open(f"/proc/{pid}/statm") as statm:
                pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)

    @staticmethod
    def process_state(pid: int) -> str | None:
        """The state letter of ``pid`` in /proc (R, S, D, T: stopped, t: traced...), or None if unreadable."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return None


@dataclasses.dataclass
class Child:
    """One child process as the master sees it."""

    pid: int
    pool: Pool
    index: int
    fd: int
    started_at: float
    last_seen: float
    state: ChildState = ChildState.BOOTING
    deadline: float | None = None
    booted_at: float | None = None
    tasks: int = 0
    max_tasks: int = 0
    retiring: bool = False  # asked to go: its exit is expected
    recycling: bool = False  # wants a replacement before it is retired
    stop_deadline: float | None = None  # SIGKILL then, if it has not left
    alarm_at: float | None = None  # SIGALRM then: fail the task in hand and go
    kill_stage: KillStage = KillStage.NONE
    kill_at: float | None = None  # SIGKILL then, once ABORTED
    next_rss_check: float = 0.0
    buffer: bytes = b""
    failure: str | None = None  # what the child said before it gave up (FAILED ...)
    ended_by: str | None = None  # why the master ended it, for the restarts' count (hung, recycle...)

    @property
    def label(self) -> str:
        return f"{self.pool.name}#{self.index}"

    @property
    def busy(self) -> bool:
        """A task in hand, or its history being paged: not spare."""
        return self.state in (ChildState.WORKING, ChildState.PAGING)

    def escalate(self, stage: KillStage) -> None:
        """The one place the kill stage moves: forward only (see KillStage)."""
        if not self.kill_stage.may_become(stage):
            raise RuntimeError(f"{self.label}: no kill stage edge from {self.kill_stage.name} to {stage.name}")
        self.kill_stage = stage

    def next_check(self) -> float:
        """The earliest time at which ``overdue`` may start saying yes."""
        if self.kill_stage is KillStage.ABORTED:  # already overdue: only the SIGKILL is ahead
            assert self.kill_at is not None  # set with ABORTED
            return self.kill_at
        spec = self.pool.spec
        times = [self.last_seen + spec.beat_timeout]
        if self.alarm_at is not None and self.kill_stage is KillStage.NONE:
            times.append(self.alarm_at)
        if self.state is ChildState.BOOTING:
            times.append(self.started_at + spec.boot_timeout)
        if self.deadline is not None:
            times.append(self.deadline + spec.heartbeat_grace)
        if self.stop_deadline is not None:
            times.append(self.stop_deadline)
        return min(times)

    def overdue(self, now: float) -> str | None:
        """Why this child must be killed now, or None: it is late, not merely busy."""
        spec = self.pool.spec
        if self.state is ChildState.BOOTING and now - self.started_at > spec.boot_timeout:
            return f"did not boot within {spec.boot_timeout:g} s"
        if self.deadline is not None and now > self.deadline + spec.heartbeat_grace:
            return f"{self.state.value} {now - self.deadline:.1f} s past its deadline"
        if now - self.last_seen > spec.beat_timeout:
            return f"silent for {now - self.last_seen:.1f} s ({self.state.value})"
        return None


@dataclasses.dataclass
class Registrar:
    """A throwaway process that registers one pool's domain and types (caravand.registration)."""

    pid: int
    pool: Pool
    deadline: float
    killed: bool = False
    superseded: bool = False  # a newer registration of its pool replaced it: its exit is no news


@dataclasses.dataclass
class Counter:
    """The backlog counter (caravand.backlog): one process that counts ``targets`` and says each count."""

    pid: int
    fd: int
    targets: tuple[backlog.Target, ...]
    last_seen: float
    buffer: bytes = b""
    killed: bool = False  # silent too long, or its targets changed: its exit is no news


@dataclasses.dataclass
class ReloadCheck:
    """A throwaway process that imports a new ini's pool modules before a reload applies it."""

    pid: int
    fd: int  # its one-line error comes through this pipe
    config: Config
    deadline: float
    superseded: bool = False  # a newer HUP's check replaced it
    timed_out: bool = False


class Pool:
    """A pool's spec, restart state and children; ``draining`` once removed or replaced.

    The pool owns its children: ``add`` and ``remove`` alone change them,
    and keep ``registry`` (the master's children by pid, ``Master.children``)
    in step, so that the master finds a child by pid without walking pools.

    ``registration``: ``pending`` (to do), ``running`` (a registrar runs),
    ``done``, or ``failed`` (tried again at ``registration_retry_at``). The
    pool's first children wait for the first attempt to end, whatever its
    outcome, so that they do not poll a domain that is being registered.
    """

    def __init__(self, spec, clock, rng=random.random, *, registration: bool = True, registry=None):
        self.spec = spec
        self.registry: dict[int, Child] = {} if registry is None else registry
        self.name = spec.name
        self.health = PoolHealth(spec.name, spec.restart_policy(), clock, rng)
        self.target = spec.processes
        self._children: dict[int, Child] = {}  # by index
        self.draining = False
        self.replaces: Pool | None = None  # the older pool to drain once this one is up
        self.registration = "pending" if registration else "done"
        self.registration_retry_at = 0.0
        self.registration_backoff = Backoff(base=5.0, cap=300.0, rng=rng)
        self.may_serve = not registration  # False until the first registration attempt ended
        self.last_failure: str | None = None  # why its last child gave up, for the log and STATUS
        self.backlog: int | None = None  # its pending tasks at the last count; None: unknown
        self.autoscaler = Autoscaler(spec, clock) if spec.autoscaled else None

    @property
    def children(self) -> Mapping[int, Child]:
        """Its children by index, read-only: ``add`` and ``remove`` change them."""
        return types.MappingProxyType(self._children)

    def add(self, child: Child) -> None:
        if child.index in self._children:
            raise RuntimeError(f"{child.label}: index taken by pid {self._children[child.index].pid}")
        self._children[child.index] = child
        self.registry[child.pid] = child

    def remove(self, child: Child) -> None:
        """``child`` exited: its index is free again."""
        if self._children.get(child.index) is child:
            del self._children[child.index]
        if self.registry.get(child.pid) is child:
            del self.registry[child.pid]

    def resize(self, spec) -> None:
        """Take ``spec``'s sizing (a reload): a fixed count, or its autoscaling bounds around the current target."""
        self.spec = spec
        if not spec.autoscaled:
            self.autoscaler, self.target = None, spec.processes
            return
        if self.autoscaler is None:
            self.autoscaler = Autoscaler(spec, self.health.clock)
        self.autoscaler.spec = spec
        self.target = self.autoscaler.bound(self.target)

    def busy(self) -> int:
        """Its children that work now (a task in hand, or its history being paged)."""
        return sum(c.busy for c in self.active())

    def active(self) -> list[Child]:
        """Children that count towards the target: not leaving, not being replaced."""
        return [c for c in self.children.values() if not c.retiring and not c.recycling]

    def booted(self) -> list[Child]:
        return [c for c in self.active() if c.booted_at is not None]

    def free_index(self) -> int:
        index = 1
        while index in self._children:
            index += 1
        return index


class Master:
    """The arbiter of one caravand: ``run()`` returns the process's exit code."""

    def __init__(self, config: Config, *, system: System | None = None, notifier: Notifier | None = None, rng=None):
        self.config = config
        self.system = system or System()
        self.notifier = notifier or Notifier()
        self.rng = rng or random.random
        self.pid = os.getpid()
        self.pools: dict[str, Pool] = {}
        self.by_pid: dict[int, Child] = {}  # every child, kept by the pools (Pool.add, Pool.remove)
        # What each pass of the loop skips when nothing is due: with hundreds of children, a pass
        # comes with nearly every beat, and walking them all each time made the master's CPU
        # grow with the square of their number. See loop_once.
        self.next_watch = 0.0  # no child's deadline comes before this (a lower bound: watch_children)
        self.pools_changed = True  # a child booted or exited, a signal, a reload...: manage_pools now
        self.next_manage = 0.0  # ...and at least this often (health timers, registration retries)
        self.next_status = 0.0  # STATUS= for systemd at most once per TICK
        self.reap_due = True  # a SIGCHLD came: reap in this pass (and once a TICK whatever comes)
        self.next_reap = 0.0
        # Removed or replaced pools, until their last child is gone: with
        # self.pools, every pool that has children (Master.children reads them).
        self.draining: list[Pool] = []
        self.signal_queue: list[int] = []
        self.selector: selectors.BaseSelector | None = None
        self.wakeup: tuple[int, int] | None = None
        self.embedded: EmbeddedEndpoint | None = None
        self.endpoint = config.master.endpoint()
        self.stopping: str | None = None  # "graceful" or "fast"
        self.stop_deadline: float | None = None
        self.interrupts = 0
        self.exit_code = 0
        self.done = False
        self.ready_sent = False
        self.last_status = ""
        self.next_watchdog = 0.0
        self.extra_fds: list[int] = []  # fds a child must close (pidfile...)
        self.session: boto3.Session | None = None  # a warmed one, with preload
        self.poll_client = None  # with preload: the children's poll client, built before fork
        self.registrars: dict[int, Registrar] = {}
        self.reload_checks: dict[int, ReloadCheck] = {}
        self.embedded_starting = False  # a restarted endpoint that has not said READY yet
        self.embedded_listening = False  # it said READY since it was last launched
        self.embedded_relaunch_at: float | None = None
        self.embedded_backoff = Backoff(base=1.0, cap=30.0, rng=self.rng)
        self.log_file: str | None = None  # --daemon's output file, reopened on USR1
        self.stack_dir: str | None = None  # one stack dump file per child (see read_stack)
        self.metrics_socket: socket.socket | None = None  # bound at start; served by the metrics child
        self.metrics_pid: int | None = None
        self.metrics_started_at = 0.0
        self.metrics_relaunch_at: float | None = None
        self.metrics_backoff = Backoff(base=1.0, cap=30.0, rng=self.rng)
        self.counter: Counter | None = None  # the backlog counter, while it runs
        self.counter_relaunch_at = 0.0
        self.counter_backoff = Backoff(base=COUNTER_BACKOFF, cap=60.0, rng=self.rng)
        self.metrics_exported: set[tuple[str, str]] = set()  # the (pool, state) children gauges set
        self.metrics_pools: set[str] = set()  # the pools whose gauges are set
        self.next_export = 0.0

    def now(self) -> float:
        return self.system.monotonic()

    @property
    def children(self) -> Mapping[int, Child]:
        """Every child by pid, read-only, of the pools that own them (the serving and the draining): they keep it."""
        return types.MappingProxyType(self.by_pid)

    # -- life

    def run(self) -> int:
        """Start, loop until stopped, clean up; returns the exit code."""
        try:
            self.start()  # inside: what it started (the embedded endpoint) is stopped whatever fails
            self.manage_pools(self.now())  # spawn at once, not after a first tick
            while not self.done:
                self.loop_once()
        finally:
            self.cleanup()
        log.info("stopped: master (pid %d, exit %d)", self.pid, self.exit_code)
        return self.exit_code

    def start(self) -> None:
        setproctitle.setproctitle(f"caravand: master [{self.config.path}]")
        if self.config.master.metrics_bind and metrics.enabled():
            # First: a port in use is a one-line startup error (exit 78), before anything runs.
            self.metrics_socket = metrics.bind(self.config.master.metrics_bind)
            family = metrics.families()
            family.master_info.labels(__version__, self.config.path).set(1)
            family.last_reload.set(time.time())
            for result in ("ok", "refused"):
                family.reloads.labels(result)  # 0 until the first: a rate() needs the series
            self.metrics_relaunch_at = 0.0  # the metrics child is forked by the first pass
        self.selector = selectors.DefaultSelector()
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (read_end, write_end)
        self.selector.register(read_end, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self.enqueue_signal)
        log.info("starting: master (pid %d) with %s", self.pid, self.config.path)
        self.stack_dir = make_stack_dir(self.pid)
        if self.config.master.embedded:
            self.start_embedded()
        if self.config.master.preload:
            self.preload()
        for spec in self.config.pools.values():
            self.pools[spec.name] = self.make_pool(spec)
        if not self.pools:
            log.warning("no pools in %s: nothing to run", self.config.path)

    def enqueue_signal(self, signum, frame) -> None:
        """The only thing a handler does: queue. The loop handles it."""
        self.signal_queue.append(signum)

    def loop_once(self) -> None:
        self.read_ready(self.next_timeout())
        woke = self.now()
        self.handle_signals()
        if self.reap_due or woke >= self.next_reap:  # a SIGCHLD, or the safety net of once a TICK
            self.reap_due, self.next_reap = False, woke + TICK
            self.reap()
        now = self.now()
        if now - woke > LATE_PASS:
            # This pass ran late (a reload's parsing, a slow disk): the
            # children's beats are waiting in their pipes, not missing.
            self.read_ready(0)
            now = self.now()
        self.watch_helpers(now)
        if now >= self.next_watch:
            self.watch_children(now)
        self.manage_embedded(now)
        self.manage_metrics(now)
        self.manage_backlog(now)
        if self.pools_changed or now >= self.next_manage:
            self.manage_pools(now)
        self.export_metrics(now)
        self.check_stop(now)
        self.tell_systemd(now)

    def read_ready(self, timeout: float) -> None:
        assert self.selector is not None  # start() made it
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                self.drain_wakeup()
            elif key.data == "embedded":
                self.embedded_said()
            elif isinstance(key.data, Counter):
                self.counter_said(key.data)
            else:
                self.read_child(key.data)

    def next_timeout(self) -> float:
        now = self.now()
        wakes = [now + TICK]
        wakes += [p.health.next_check() or now + TICK for p in self.pools.values()]
        # A child's deadline passing must be seen then, not at the next tick.
        wakes.append(self.next_watch)
        wakes.append(now if self.pools_changed else self.next_manage)
        wakes += [r.deadline for r in self.registrars.values() if not r.killed]
        wakes += [c.deadline for c in self.reload_checks.values() if not c.timed_out]
        wakes += [p.registration_retry_at for p in self.pools.values() if p.registration == "failed"]
        if self.embedded_relaunch_at is not None:
            wakes.append(self.embedded_relaunch_at)
        if self.metrics_relaunch_at is not None:
            wakes.append(self.metrics_relaunch_at)
        if self.counter is not None and not self.counter.killed:
            wakes.append(self.counter.last_seen + backlog.SILENCE_LIMIT)
        elif self.counter is None and self.counter_relaunch_at > now:  # a relaunch after backoff
            wakes.append(self.counter_relaunch_at)
        if self.notifier.watchdog_interval:
            wakes.append(self.next_watchdog)
        return max(0.0, min(wakes) - now)

    def drain_wakeup(self) -> None:
        assert self.wakeup is not None  # start() made it
        try:
            while os.read(self.wakeup[0], 4096):
                pass
        except BlockingIOError:
            pass

    def cleanup(self) -> None:
        signal.set_wakeup_fd(-1)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)
        if self.embedded is not None:
            self.embedded.stop()
        self.stop_counter()
        self.stop_metrics()
        if self.selector is not None:
            self.selector.close()
        if self.wakeup is not None:
            for fd in self.wakeup:
                os.close(fd)
        if self.stack_dir is not None:
            shutil.rmtree(self.stack_dir, ignore_errors=True)

    # -- signals

    def handle_signals(self) -> None:
        if self.signal_queue:
            self.pools_changed = True
        while self.signal_queue:
            signum = self.signal_queue.pop(0)
            name = signal.Signals(signum).name[3:].lower()
            getattr(self, f"handle_{name}")()

    def handle_chld(self) -> None:
        self.reap_due = True  # reaped in this same pass

    def handle_term(self) -> None:
        self.begin_stop("graceful")

    def handle_int(self) -> None:
        self.interrupts += 1
        self.begin_stop("graceful" if self.interrupts == 1 else "fast")

    def handle_quit(self) -> None:
        self.begin_stop("fast")

    def handle_hup(self) -> None:
        self.reload()

    def handle_ttin(self) -> None:
        for pool in self.pools.values():
            # An autoscaled pool's target moves within its bounds; a fixed one's up to max_processes.
            limit = pool.spec.scale_max if pool.autoscaler else self.config.master.max_processes
            if pool.target >= limit:
                bound = "its processes' MAX" if pool.autoscaler else "max_processes"
                log.warning("scale: %s stays at %d (TTIN): %s is %d", pool.name, pool.target, bound, limit)
                continue
            self.scale(pool, Step(pool.target + 1, "up", "ttin", "TTIN"))

    def handle_ttou(self) -> None:
        for pool in self.pools.values():
            floor = pool.spec.processes if pool.autoscaler else 0
            if pool.target <= floor:
                if pool.autoscaler:
                    log.warning("scale: %s stays at %d (TTOU): its processes' MIN is %d", pool.name, pool.target,
                                floor)  # fmt: skip
                continue
            self.scale(pool, Step(pool.target - 1, "down", "ttou", "TTOU"))

    def scale(self, pool: Pool, step: Step) -> None:
        """Move ``pool``'s target (manage_pools spawns, or retires the spare children first); log and count it."""
        log.info("scale: %s %s from %d to %d (%s)", pool.name, step.direction, pool.target, step.target, step.detail)
        pool.target = step.target
        if pool.autoscaler is not None:
            pool.autoscaler.stepped()
        if self.metrics_socket is not None:
            metrics.families().scale_steps.labels(pool.name, step.direction, step.reason).inc()

    def handle_usr1(self) -> None:
        if self.log_file:
            reopen_output(self.log_file)
        reopen_log_files()
        log.info("reopened log files (USR1)")  # the first line of the new file
        for child in self.children.values():
            self.signal_child(child, signal.SIGUSR1)

    # -- children

    def spawn(self, pool: Pool) -> Child | None:
        index = pool.free_index()
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:  # EMFILE, ENFILE: a failed start of this pool, not the master's end
            log.error("spawn failed: %s (pipe: %s)", pool.name, exc.strerror)
            pool.health.child_exited(crashed=True, uptime=0.0)
            return None
        pid = self.fork(pool, read_end, write_end)
        if pid is None:
            return None
        if pid == 0:  # the child: never returns
            os.close(read_end)
            self.close_in_child()
            try:
                ChildProcess(
                    pool.spec,
                    index,
                    self.endpoint,
                    write_end,
                    self.pid,
                    session=self.session,
                    poll_client=self.poll_client,
                    log_file=self.log_file,
                    stack_file=self.stack_file(os.getpid()),
                ).run()
            finally:
                os._exit(1)  # run() never returns; should anything escape it, the master's code must not go on
        os.close(write_end)
        os.set_blocking(read_end, False)
        now = self.now()
        jitter = int(self.rng() * (pool.spec.max_tasks_jitter + 1)) if pool.spec.max_tasks else 0
        child = Child(pid, pool, index, read_end, now, now, max_tasks=pool.spec.max_tasks + jitter)
        pool.add(child)
        assert self.selector is not None  # start() made it
        self.selector.register(read_end, selectors.EVENT_READ, child)
        self.watch_soon(child)
        log.info("spawned: %s (pid %d)", child.label, pid)
        return child

    def fork(self, pool: Pool | None, *fds: int, failed_start: bool = True) -> int | None:
        """Fork with the child's signals blocked; None (and ``fds`` closed) if the OS refused.

        A refused fork of a child is a failed start of its pool (``failed_start``).
        """
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the child has its own handlers: a SIGTERM in
        # between would otherwise land in our queue's copy and be lost.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, child_module.HANDLED_SIGNALS)
        try:
            pid = self.system.fork()
        except OSError as exc:  # EAGAIN, ENOMEM: a failed start of this pool, not the master's end
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for fd in fds:
                os.close(fd)
            log.error("fork failed: %s (%s)", pool.name if pool else "master", exc)
            if failed_start and pool is not None:
                pool.health.child_exited(crashed=True, uptime=0.0)
            return None
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid

    def stack_file(self, pid: int) -> str | None:
        return None if self.stack_dir is None else os.path.join(self.stack_dir, f"{pid}.stack")

    def read_stack(self, child: Child) -> None:
        """Log the stack dump a hung child wrote (one file each: simultaneous dumps never interleave)."""
        path = self.stack_file(child.pid)
        if path is None:
            return
        try:
            with open(path, errors="replace") as dump:
                text = dump.read().strip()
            os.unlink(path)
        except OSError:
            return
        if text:
            log.error("stack: %s (pid %d) when it was aborted:\n%s", child.label, child.pid, text)

    def close_in_child(self, keep_metrics_socket: bool = False) -> None:
        """In a new child: drop the master's descriptors (selector, wakeup pipe, siblings' pipes, ...)."""
        signal.set_wakeup_fd(-1)
        assert self.selector is not None and self.wakeup is not None  # start() made them
        fds = [*self.wakeup, *self.extra_fds, *(c.fd for c in self.children.values())]
        if self.metrics_socket is not None and not keep_metrics_socket:
            fds.append(self.metrics_socket.fileno())
        fds += [check.fd for check in self.reload_checks.values()]
        if self.counter is not None and self.counter.fd >= 0:
            fds.append(self.counter.fd)
        fds += [fd for fd in (self.notifier.fileno(), self.embedded_stdout()) if fd is not None]
        self.selector.close()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def embedded_stdout(self) -> int | None:
        if self.embedded is None or self.embedded.process is None or self.embedded.process.stdout is None:
            return None
        return self.embedded.process.stdout.fileno()

    def read_child(self, child: Child) -> None:
        lines = read_lines(child)
        if lines is None:  # the child closed its pipe: it is dying; reap() will see it
            self.unregister(child)
            return
        now = self.now()
        child.last_seen = now
        for line in lines:
            self.child_said(child, line, now)

    def child_said(self, child: Child, line: bytes, now: float) -> None:
        """Take one line of ``child`` (caravand.protocol): what it does from now on, or what it did."""
        message = protocol.decode(line)
        if message is None:
            return
        if message.garbled:  # never from our reporter; a bad line must not stop the master
            text = " ".join(line.decode(errors="replace").split())
            log.warning("garbled: %s (pid %d) said %r", child.label, child.pid, text)
        word = message.word
        was = child.state
        if word == protocol.BOOTED:  # BOOTING -> IDLE
            child.state, child.deadline, child.booted_at = ChildState.IDLE, None, now
            self.pools_changed = True  # its pool may be up: RUNNING, READY=1, a replaced pool drained
            log.info("booted: %s (pid %d) in %.2f s", child.label, child.pid, now - child.started_at)
        elif word == protocol.IDLE:
            child.state, child.deadline = ChildState.IDLE, None
        elif word in protocol.BUSY:  # POLLING, PAGING, WORKING; a garbled deadline reads as none
            child.state, child.deadline = protocol.BUSY[word], message.deadline
        elif word == protocol.FAILED:  # it gives up, and exits as a failed start
            child.failure = message.text or "no reason given"
        elif word == protocol.DONE:  # WORKING -> IDLE, and a task counted
            child.state, child.deadline = ChildState.IDLE, None
            child.tasks += 1
            if child.max_tasks and child.tasks >= child.max_tasks and not child.recycling:
                child.recycling = True
                self.pools_changed = True  # its replacement is spawned first
                log.info("recycling: %s (pid %d) after %d tasks", child.label, child.pid, child.tasks)
        # BEAT, and a line it cannot read: last_seen (read_child) is all it updates
        if child.deadline is not None:  # a deadline said now may come before any the loop knows of
            self.watch_soon(child)
        autoscaler = child.pool.autoscaler
        if autoscaler is not None and child.state is not was:  # every change of who works, not a sample a second
            autoscaler.observe(child.pool.busy(), child.pool.target)

    def unregister(self, reader: Child | Counter) -> None:
        """Close the pipe a child or the backlog counter speaks through, out of the selector first; once."""
        if reader.fd >= 0:
            assert self.selector is not None  # start() made it, before any pipe existed
            try:
                self.selector.unregister(reader.fd)
            except (KeyError, ValueError):
                pass
            os.close(reader.fd)
            reader.fd = -1

    def reap(self) -> None:
        while True:
            try:
                pid, status = self.system.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            metrics.process_dead(pid)  # its live gauges go; what it counted stays
            if pid == self.metrics_pid:
                self.metrics_died(status)
                continue
            if self.counter is not None and pid == self.counter.pid:
                self.counter_exited(status)
                continue
            if self.embedded is not None and self.embedded.pid == pid:
                self.embedded_died(status)
                continue
            registrar = self.registrars.pop(pid, None)
            if registrar is not None:
                self.registrar_exited(registrar, status)
                continue
            check = self.reload_checks.pop(pid, None)
            if check is not None:
                self.reload_checked(check, status)
                continue
            child = self.children.get(pid)
            if child is not None:
                self.child_exited(child, status)

    def child_exited(self, child: Child, status: int) -> None:
        self.pools_changed = True
        self.unregister(child)
        pool = child.pool
        pool.remove(child)
        self.read_stack(child)
        now = self.now()
        uptime = now - child.started_at
        how = describe_status(status)
        code = os.waitstatus_to_exitcode(status)
        crashed = not child.retiring and not self.stopping
        if code == child_module.EXIT_BOOT_FAILED:
            uptime = 0.0  # it never started (or gave up on errors no retry fixes), however long it took
            if child.failure:
                pool.last_failure = child.failure
        elif child.booted_at is not None and child.ended_by is None and killed_from_outside(status):
            # It booted, and someone (an operator, a chaos test, the OOM killer) killed it: its start
            # did not fail, however soon it came; ten such kills must not make the pool FATAL.
            uptime = max(uptime, pool.spec.min_uptime)
        if crashed and uptime >= pool.spec.min_uptime:
            log.error("crashed: %s (pid %d, %s) after %.1f s; replacing it at once", child.label, child.pid, how,
                      now - child.started_at)  # fmt: skip
        elif crashed:
            log.error("crashed: %s (pid %d, %s) after %.1f s", child.label, child.pid, how, now - child.started_at)
        else:
            log.info("exited: %s (pid %d, %s)", child.label, child.pid, how)
        if not self.stopping and (crashed or child.ended_by):
            reason = child.ended_by or "crash"  # a hung child is killed: it is not retiring
            if self.metrics_socket is not None:
                metrics.families().restarts.labels(pool.name, reason).inc()
        before = pool.health.state
        pool.health.child_exited(crashed=crashed, uptime=uptime)
        if pool.health.state is PoolState.FATAL and before is not PoolState.FATAL:
            log.error(
                "gave up: %s (%d failed starts in %g s%s); retrying in %g s",
                pool.name,
                len(pool.health.crashes),
                pool.spec.restart_window,
                f"; last: {pool.last_failure}" if pool.last_failure else "",
                pool.spec.fatal_retry,
            )
        elif pool.health.state is PoolState.BACKOFF and crashed:
            log.warning("backoff: %s (restart in %.1f s)", pool.name, max(0.0, pool.health.retry_at - now))

    def signal_child(self, child: Child, signum: int) -> None:
        try:
            self.system.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def retire(self, child: Child, why: str, signum: int = signal.SIGTERM, *, reason: str = "reload") -> None:
        """Ask a child to leave after its poll and task; its exit is expected.

        ``reason``, for the restarts' count: recycle, scale, reload (the
        ini changed: its pool was replaced or removed), endpoint.
        """
        if child.retiring:
            return
        child.retiring = True
        child.ended_by = reason
        self.set_stop_deadline(child, self.now() + self.config.master.graceful_timeout)
        log.info("retiring: %s (pid %d, %s)", child.label, child.pid, why)
        self.signal_child(child, signum)
        if self.embedded is not None:  # its poll in flight is held by our endpoint: answered now, not in 60 s
            self.embedded.release_polls()

    def set_stop_deadline(self, child: Child, deadline: float) -> None:
        """SIGKILL at ``deadline``; SIGALRM ALARM_MARGIN before, so a task still in hand is failed, not lost.

        The margin fits one RespondActivityTaskFailed that is throttled or
        reconnecting (the child bounds it to fit). One clock for both, the
        master's: a reload or a second signal cannot leave a child's own
        timer behind its SIGKILL.
        """
        margin = min(ALARM_MARGIN, self.config.master.graceful_timeout / 2)
        child.stop_deadline, child.alarm_at = deadline, deadline - margin
        self.watch_soon(child)

    def watch_helpers(self, now: float) -> None:
        """Kill the throwaway processes (reload checks, registrars) that outlived their deadlines."""
        for check in self.reload_checks.values():
            if not check.timed_out and now >= check.deadline:
                check.timed_out = True
                self.system.kill(check.pid, signal.SIGKILL)
        for registrar in self.registrars.values():
            if not registrar.killed and now >= registrar.deadline:
                log.error("killing: registrar of %s (pid %d): still running after %g s", registrar.pool.name,
                          registrar.pid, REGISTRATION_TIMEOUT)  # fmt: skip
                self.system.kill(registrar.pid, signal.SIGKILL)
                registrar.killed = True

    def watch_children(self, now: float) -> None:
        """Act on every child whose deadline passed (alarm, abort, kill, recycle); note when the next comes."""
        self.watch_helpers(now)
        for child in list(self.children.values()):
            if child.kill_stage is KillStage.ABORTED:
                assert child.kill_at is not None  # set with ABORTED
                if now >= child.kill_at:
                    log.error("killing: %s (pid %d) with SIGKILL: SIGABRT did not end it", child.label, child.pid)
                    self.signal_child(child, signal.SIGKILL)
                    child.escalate(KillStage.KILLED)  # ABORTED -> KILLED: kill_grace passed and it lives
                    child.kill_at = None
                    continue
            if child.kill_stage in (KillStage.ABORTED, KillStage.KILLED):
                continue  # nothing but its SIGKILL or its exit is ahead
            if child.retiring and child.stop_deadline is not None:
                assert child.alarm_at is not None  # set with stop_deadline (set_stop_deadline)
                if now >= child.stop_deadline:
                    log.error("killing: %s (pid %d): still running at its stop deadline", child.label, child.pid)
                    self.signal_child(child, signal.SIGKILL)
                    child.escalate(KillStage.KILLED)  # NONE|ALARMED -> KILLED: past its stop deadline
                    continue
                if child.kill_stage is KillStage.NONE and now >= child.alarm_at:
                    log.warning("deadline: %s (pid %d): SIGALRM, a task in hand is failed", child.label, child.pid)
                    self.signal_child(child, signal.SIGALRM)
                    child.escalate(KillStage.ALARMED)  # NONE -> ALARMED: its stop deadline is ALARM_MARGIN away
            reason = child.overdue(now)
            if reason is not None and self.system.process_state(child.pid) in ("T", "t"):
                # SIGSTOPped (or held by a debugger): it cannot run a handler, so
                # no stack would follow a SIGABRT; only SIGKILL reaches it.
                child.ended_by = "hung"
                log.error("hung: %s (pid %d) %s: it is stopped (state T) and cannot dump its stack: SIGKILL",
                          child.label, child.pid, reason)  # fmt: skip
                self.signal_child(child, signal.SIGKILL)
                child.escalate(KillStage.KILLED)  # NONE|ALARMED -> KILLED: overdue, and stopped (state T)
                continue
            if reason is not None:
                child.ended_by = "hung"
                log.error("hung: %s (pid %d) %s: SIGABRT (its stack is logged when it exits)", child.label,
                          child.pid, reason)  # fmt: skip
                self.signal_child(child, signal.SIGABRT)
                child.escalate(KillStage.ABORTED)  # NONE|ALARMED -> ABORTED: overdue (late, silent, not booted)
                child.kill_at = now + child.pool.spec.kill_grace
                continue
            limit = child.pool.spec.max_rss_mb
            if limit and not child.recycling and now >= child.next_rss_check:
                child.next_rss_check = now + RSS_INTERVAL
                rss = self.system.rss_mb(child.pid)
                if rss is not None and rss > limit:
                    child.recycling = True
                    self.pools_changed = True  # its replacement is spawned first
                    log.info("recycling: %s (pid %d) at %.0f MB > max_rss_mb %d", child.label, child.pid, rss, limit)
        self.next_watch = min((self.watch_time(child) for child in self.children.values()), default=now + TICK)

    def watch_time(self, child: Child) -> float:
        """When ``watch_children`` must look at ``child`` next: a deadline of its own, or its memory check."""
        if child.kill_stage is KillStage.KILLED:
            return math.inf  # nothing but its exit is ahead
        when = child.next_check()
        if child.pool.spec.max_rss_mb and not child.recycling:
            when = min(when, child.next_rss_check)
        return when

    def watch_soon(self, child: Child) -> None:
        """``child`` may have a deadline earlier than any the loop knows of: have it watched then."""
        self.next_watch = min(self.next_watch, self.watch_time(child))

    # -- pools

    def manage_pools(self, now: float) -> None:
        """Bring each pool to its target (spawn, retire, recycle, drain): when something changed, or a timer is due."""
        self.pools_changed = False
        self.next_manage = now + TICK  # health timers and autoscaling: at least this often
        for pool in list(self.draining):
            if not pool.children:
                self.draining.remove(pool)
                log.info("drained: %s", pool.name)
        if self.stopping:
            return
        for pool in self.pools.values():
            if pool.registration in ("pending", "failed") and now >= pool.registration_retry_at:
                self.start_registration(pool)
            if not pool.may_serve:
                continue  # its first registration attempt runs: its domain may not exist yet
            booted = pool.booted()
            boot_times = [c.booted_at for c in booted if c.booted_at is not None]  # all of them: they booted
            all_booted_for = now - max(boot_times) if len(booted) >= pool.target and booted else None
            before = pool.health.state
            pool.health.tick(all_booted_for=all_booted_for if pool.target else float("inf"))
            if pool.health.state is not before:
                log.info("pool: %s %s -> %s", pool.name, before.name, pool.health.state.name)
            if pool.autoscaler is not None:
                pool.autoscaler.observe(pool.busy(), pool.target)
                step = pool.autoscaler.decide(pool.target)
                if step is not None:
                    self.scale(pool, step)
            # The spare go first, the busy last (each is drained, never killed: its task is finished).
            spare_first = sorted(pool.active(), key=lambda c: (c.busy, -c.index))
            for child in sorted(spare_first[: max(0, len(spare_first) - pool.target)], key=lambda c: c.index):
                self.retire(child, "scaled down", reason="scale")
            missing = pool.target - len(pool.active())
            for _ in range(missing):
                if pool.health.may_spawn() and self.spawn(pool) is not None:
                    pool.health.spawned()
            if len(pool.booted()) >= pool.target:
                for child in list(pool.children.values()):
                    if child.recycling and not child.retiring:
                        self.retire(child, "replaced", reason="recycle")
                self.drain_replaced(pool, f"replaced by the new {pool.name}")
        timers = [p.health.next_check() for p in self.pools.values()]
        timers += [p.registration_retry_at for p in self.pools.values() if p.registration == "failed"]
        self.next_manage = min([now + TICK, *(t for t in timers if t is not None)])

    def drain(self, pool: Pool, why: str | None = None) -> None:
        """Take ``pool`` out of service: it spawns no more, and is forgotten once its last child is gone.

        With ``why``, its children are retired now, for that reason; without,
        they serve on until the pool that replaces it is up (``drain_replaced``).
        The one way a pool drains; calling it again retires what still serves.
        """
        pool.draining = True
        pool.health.stop()
        if pool not in self.draining:
            self.draining.append(pool)
        if why is not None:
            for child in list(pool.children.values()):
                self.retire(child, why)

    def serving_generation(self, pool: Pool) -> Pool:
        """The generation of ``pool`` that serves until a newer one is up; the others go now.

        ``pool`` itself serves unless it is a replacement that never came up
        (a failing module, a crash loop): then its predecessor still serves,
        and ``pool`` is drained. A refused or failing replacement must never
        retire the pool that serves (HUP, HUP with two bad inis left none).
        """
        serving = pool
        if pool.replaces is not None:
            serving, pool.replaces = pool.replaces, None
            self.drain(pool, f"superseded by a newer {pool.name} before it was up")
        self.drain(serving)  # its children serve on until the newest generation is up
        return serving

    def drain_replaced(self, pool: Pool, why: str) -> None:
        """The older generation that served until ``pool`` was up goes now (``pool`` is up, or removed)."""
        if pool.replaces is not None:
            self.drain(pool.replaces, why)
            pool.replaces = None

    # -- stop and reload

    def begin_stop(self, mode: str) -> None:
        now = self.now()
        if self.stopping is None:
            self.stopping = mode
            self.stop_deadline = now + self.config.master.graceful_timeout
            self.notifier.notify("STOPPING=1", f"STATUS=stopping ({mode})")
            log.info("stopping: master (%s, %d children, up to %g s)", mode, len(self.children),
                     self.config.master.graceful_timeout)  # fmt: skip
        elif mode == "fast" and self.stopping != "fast":
            self.stopping = "fast"
            log.info("stopping: master (fast now)")
        else:
            return
        signum = signal.SIGQUIT if mode == "fast" else signal.SIGTERM
        deadline = self.stop_deadline
        assert deadline is not None  # set by the first stop
        for pool in [*self.pools.values(), *self.draining]:
            pool.health.stop()
        for child in list(self.children.values()):
            child.retiring = True
            self.set_stop_deadline(child, deadline)
            self.signal_child(child, signum)
        if self.embedded is not None:  # after the signals: the children's polls in flight end now, empty
            self.embedded.release_polls()
        for registrar in self.registrars.values():  # nothing in hand: SWF calls are idempotent
            self.system.kill(registrar.pid, signal.SIGTERM)
        for check in self.reload_checks.values():
            check.superseded = True
            self.system.kill(check.pid, signal.SIGKILL)
        self.kill_counter("the master stops")

    def check_stop(self, now: float) -> None:
        if not self.stopping:
            return
        if not self.children and not self.registrars and not self.reload_checks:  # deadlines see to the rest
            self.done = True

    def reload(self) -> None:
        """Read the ini again; apply it if valid, else keep running as before."""
        log.info("reloading: %s (HUP)", self.config.path)
        self.notifier.notify("RELOADING=1", "STATUS=reloading")
        try:
            new = load(self.config.path, self.config.overrides)
            if new.master.endpoint() != self.config.master.endpoint() or (
                new.master.embedded and new.master.embedded_port != self.config.master.embedded_port
            ):
                raise swf.ConfigError(f"{new.path}: [caravand] endpoint settings changed: restart caravand to apply")
            new = self.keep_restart_only_settings(new)
        except Exception as exc:  # a factory of one's own may raise anything: never the master's end
            self.refuse_reload(exc)
            return
        if self.stopping:
            return
        self.start_reload_check(new)

    def refuse_reload(self, exc) -> None:
        detail = exc if isinstance(exc, (str, swf.CaravanError)) else f"{type(exc).__name__}: {exc}"
        log.error("reload refused: %s (the running configuration stays)", detail)
        if self.metrics_socket is not None:
            metrics.families().reloads.labels("refused").inc()
        self.notifier.notify("READY=1", "STATUS=reload refused; running as before")

    def start_reload_check(self, new: Config) -> None:
        """Import the new ini's modules in a throwaway process; the loop applies or refuses when it exits.

        The master never imports them itself (without ``preload`` it stays
        clean), and never waits: a slow import is a state with a deadline.
        A newer HUP supersedes a check still running.
        """
        for check in self.reload_checks.values():
            if not check.superseded:
                check.superseded = True
                self.system.kill(check.pid, signal.SIGKILL)
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:
            self.refuse_reload(f"cannot check its modules: {exc.strerror}")
            return
        pid = self.fork(None, read_end, write_end, failed_start=False)
        if pid is None:
            self.refuse_reload("cannot fork the process that checks its modules")
            return
        if pid == 0:  # the check: never returns
            os.close(read_end)
            self.close_in_child()
            try:
                child_module.run_import_check(new, write_end, self.pid)
            finally:
                os._exit(1)
        os.close(write_end)
        os.set_blocking(read_end, False)  # a module's own process may hold the write end: never wait on it
        self.reload_checks[pid] = ReloadCheck(pid, read_end, new, self.now() + RELOAD_CHECK_TIMEOUT)

    def reload_checked(self, check: ReloadCheck, status: int) -> None:
        try:
            message = os.read(check.fd, 65536).decode(errors="replace").strip()
        except OSError:
            message = ""
        os.close(check.fd)
        if check.superseded or self.stopping:
            return
        if status != 0:
            if check.timed_out:
                message = f"importing its modules took longer than {RELOAD_CHECK_TIMEOUT:g} s"
            self.refuse_reload(message or f"the process that checked its modules ended ({describe_status(status)})")
            return
        self.apply_reload(check.config)

    def apply_reload(self, new: Config) -> None:
        """The new ini is valid and its modules import: start, resize, replace and drain pools to match it."""
        try:
            setup_logging(new)
        except swf.CaravanError as exc:
            self.refuse_reload(exc)
            return
        self.pools_changed, self.next_watch = True, 0.0  # new pools, targets and deadlines
        registers_domains_now = new.master.register_domains and not self.config.master.register_domains
        old_pools, self.config = self.pools, new
        self.pools = {}
        for name, spec in new.pools.items():
            pool = old_pools.pop(name, None)
            if pool is not None and pool.spec.same_work(spec):
                if spec.processes_text != pool.spec.processes_text:
                    log.info("resized: %s to %s", name, spec.processes_text)
                pool.resize(spec)
                self.pools[name] = pool
            else:
                fresh = self.make_pool(spec)
                if pool is not None:
                    fresh.replaces = self.serving_generation(pool)  # drained once the new one is up
                    log.info("replacing: %s (new settings; new children first)", name)
                else:
                    log.info("added: %s", name)
                self.pools[name] = fresh
        for pool in old_pools.values():  # removed: with the older generation it was to replace, if any
            self.drain_replaced(pool, "removed from the ini")
            self.drain(pool, "removed from the ini")
        if registers_domains_now:  # the pools it keeps register their domains too (the new ones do anyway)
            for pool in self.pools.values():
                if pool.registration != "pending":
                    self.restart_registration(pool)
        log.info("reloaded: %s (%d pools)", self.config.path, len(self.pools))
        if self.metrics_socket is not None:
            family = metrics.families()
            family.reloads.labels("ok").inc()
            family.last_reload.set(time.time())
        self.notifier.notify("READY=1", "STATUS=reloaded")

    def keep_restart_only_settings(self, new: Config) -> Config:
        """``new`` with the running values of the settings only a restart applies; says which changed."""
        old = self.config.master
        changed = [name for name in RESTART_ONLY if getattr(new.master, name) != getattr(old, name)]
        if not changed:
            return new
        log.warning("reload: [caravand] %s changed: only a restart applies %s (running as before)",
                    ", ".join(changed), "it" if len(changed) == 1 else "them")  # fmt: skip
        master = dataclasses.replace(new.master, **{name: getattr(old, name) for name in RESTART_ONLY})
        return dataclasses.replace(new, master=master)

    # -- systemd

    def tell_systemd(self, now: float) -> None:
        if not self.notifier.enabled:
            return
        fields = []
        # Until READY=1, each pass; then STATUS= at most once per TICK: it walks every child.
        fresh = not self.ready_sent or now >= self.next_status
        if fresh:
            status, self.next_status = self.status_line(), now + TICK
        else:
            status = self.last_status
        # A FATAL pool counts as settled: one broken pool must not fail the whole service.
        if (
            not self.ready_sent
            and not self.stopping
            and all(len(p.booted()) >= p.target or p.health.state is PoolState.FATAL for p in self.pools.values())
        ):
            self.ready_sent = True
            fields.append("READY=1")
            fatal = [p.name for p in self.pools.values() if p.health.state is PoolState.FATAL]
            if fatal:
                log.warning("ready: every pool booted but %s, which gave up", ", ".join(fatal))
            else:
                log.info("ready: every pool has its children booted")
        if status != self.last_status:
            self.last_status = status
            fields.append(f"STATUS={status}")
        if self.notifier.watchdog_interval and now >= self.next_watchdog:
            self.next_watchdog = now + self.notifier.watchdog_interval
            fields.append("WATCHDOG=1")
        if fields:
            self.notifier.notify(*fields)

    def status_line(self) -> str:
        parts = [
            f"{p.name} {len(p.booted())}/{p.target} {p.health.state.value}"
            + (f" ({p.last_failure})" if p.health.state is PoolState.FATAL and p.last_failure else "")
            for p in self.pools.values()
        ]
        if self.draining:
            parts.append(f"draining {sum(len(p.children) for p in self.draining)}")
        return "; ".join(parts) or "no pools"

    # -- the embedded endpoint, domains, preload

    def start_embedded(self) -> None:
        from caravand.embedded import EmbeddedEndpoint

        master = self.config.master
        # Its hold is our poll_timeout, which our clients' read timeouts follow.
        state = os.path.join(os.path.dirname(master.path), master.embedded_state) if master.embedded_state else None
        embedded = self.embedded = EmbeddedEndpoint(
            port=master.embedded_port, poll_hold=master.poll_timeout, state=state
        )
        try:
            url = embedded.start()
        except OSError as exc:  # Popen under a process or file limit: EAGAIN, EMFILE, EACCES...
            self.embedded = None
            raise swf.CaravanError(f"embedded SWF endpoint: cannot start its process: {exc}") from None
        log.info("embedded SWF endpoint: %s (pid %d)", url, embedded.pid)
        self.embedded_listening = True

    def embedded_died(self, status: int) -> None:
        assert self.embedded is not None and self.embedded.process is not None  # reap() found its pid
        self.embedded.process.returncode = os.waitstatus_to_exitcode(status)
        self.unregister_embedded()
        if self.stopping:
            return
        how = describe_status(status)
        if self.embedded_listening:  # it served: restart it at once
            self.embedded_backoff.reset()
            delay = 0.0
            kept = "from embedded_state as last saved" if self.config.master.embedded_state else "its state is lost"
            log.error("embedded SWF endpoint died (%s): restarting it; %s", how, kept)
        else:  # it died before it listened (port taken, moto broken): no hot loop
            delay = self.embedded_backoff.next_delay()
            log.error("embedded SWF endpoint died before it listened (%s): restarting it in %.1f s", how, delay)
        self.embedded_relaunch_at = self.now() + delay

    def manage_embedded(self, now: float) -> None:
        """Relaunch a dead embedded endpoint when its time comes; its READY line comes through the selector."""
        if self.embedded_relaunch_at is None or now < self.embedded_relaunch_at or self.stopping:
            return
        self.embedded_relaunch_at = None
        self.embedded_listening = False
        assert self.embedded is not None and self.selector is not None  # it died, after start() made them
        try:
            stdout = self.embedded.launch()
        except (swf.CaravanError, OSError) as exc:  # a process limit: try again later, never give up
            delay = self.embedded_backoff.next_delay()
            log.error("embedded SWF endpoint: cannot restart it: %s (again in %.1f s)", exc, delay)
            self.embedded_relaunch_at = now + delay
            return
        self.embedded_starting = True
        self.selector.register(stdout, selectors.EVENT_READ, "embedded")

    def embedded_said(self) -> None:
        """The restarted endpoint announced itself (or closed its output, dying): go on without waiting."""
        assert self.embedded is not None  # the selector said it spoke
        url = self.embedded.read_ready_line()
        self.unregister_embedded()
        if url is None:
            return  # it died before listening; reap() sees it and restarts it again
        log.info("embedded SWF endpoint: %s (pid %d) restarted", url, self.embedded.pid)
        self.embedded_listening = True
        self.pools_changed = True
        for pool in self.pools.values():  # its domains and types are gone with it: register again first
            if self.needs_registration(pool.spec):
                pool.may_serve = not self.config.master.register_domains
                self.restart_registration(pool)
        for child in list(self.children.values()):
            self.retire(child, "the embedded endpoint restarted", reason="endpoint")

    def unregister_embedded(self) -> None:
        if not self.embedded_starting:
            return
        self.embedded_starting = False
        assert self.selector is not None and self.embedded is not None and self.embedded.process is not None
        stdout = self.embedded.process.stdout  # launched, and registered while it starts
        try:
            if stdout is not None:
                self.selector.unregister(stdout)
        except (KeyError, ValueError):
            pass

    # -- metrics: a child serves them; the master writes its gauges

    def manage_metrics(self, now: float) -> None:
        """Fork the metrics child when its time comes (at start, or after it died: with backoff)."""
        if self.metrics_relaunch_at is None or now < self.metrics_relaunch_at or self.stopping:
            return
        assert self.metrics_socket is not None  # a relaunch is set only with it
        self.metrics_relaunch_at = None
        pid = self.fork(None, failed_start=False)
        if pid is None:
            self.metrics_relaunch_at = now + self.metrics_backoff.next_delay()
            return
        if pid == 0:  # the metrics child: never returns
            self.close_in_child(keep_metrics_socket=True)
            MetricsProcess(self.metrics_socket, self.pid, self.config.master.metrics_bind).run()
            os._exit(1)
        self.metrics_pid, self.metrics_started_at = pid, now
        log.info("metrics: http://%s%s (pid %d)", self.config.master.metrics_bind, metrics.PATH, pid)

    def metrics_died(self, status: int) -> None:
        self.metrics_pid = None
        if self.stopping:
            return
        now = self.now()
        if now - self.metrics_started_at >= 10 * TICK:  # it served a while: a fresh failure, not a loop
            self.metrics_backoff.reset()
        delay = self.metrics_backoff.next_delay()
        log.error("metrics endpoint died (%s): restarting it in %.1f s", describe_status(status), delay)
        self.metrics_relaunch_at = now + delay

    def stop_metrics(self) -> None:
        """At exit: the metrics child goes (it holds nothing), and the socket closes."""
        if self.metrics_pid is not None:
            self.end_helper(self.metrics_pid)
            self.metrics_pid = None
        if self.metrics_socket is not None:
            self.metrics_socket.close()
            self.metrics_socket = None

    # -- the backlog counter: one process counts every pool's pending tasks

    def backlog_targets(self) -> tuple[backlog.Target, ...]:
        """What the counter counts: each serving pool that autoscales, or every one when metrics are on."""
        if self.stopping:
            return ()
        return tuple(
            backlog.Target.of(pool.spec)
            for pool in self.pools.values()
            if pool.spec.backlog_interval
            and pool.spec.kind in backlog.OPERATIONS
            and (pool.autoscaler is not None or self.metrics_socket is not None)
        )

    def manage_backlog(self, now: float) -> None:
        """Keep one counter of the current targets: fork it, replace it when they change, kill it when silent."""
        counter = self.counter
        if counter is not None and not counter.killed and not self.pools_changed:
            if now - counter.last_seen <= backlog.SILENCE_LIMIT:
                return  # the pools are as they were (a reload or a stop changes them): nothing to do
        targets = self.backlog_targets()
        if counter is not None and not counter.killed:
            if counter.targets != targets:
                self.kill_counter("the pools changed")
            elif now - counter.last_seen > backlog.SILENCE_LIMIT:
                log.error("backlog counter (pid %d) silent for %.0f s: killing it", counter.pid,
                          now - counter.last_seen)  # fmt: skip
                self.kill_counter("silent")
                self.counter_relaunch_at = now + self.counter_backoff.next_delay()
        if self.counter is not None or not targets or now < self.counter_relaunch_at:
            return
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:
            log.error("backlog counter: cannot start: %s", exc.strerror)
            self.counter_relaunch_at = now + self.counter_backoff.next_delay()
            return
        pid = self.fork(None, read_end, write_end, failed_start=False)
        if pid is None:
            self.counter_relaunch_at = now + self.counter_backoff.next_delay()
            return
        if pid == 0:  # the counter: never returns
            os.close(read_end)
            self.close_in_child()
            try:
                backlog.BacklogProcess(list(targets), self.endpoint, write_end, self.pid, session=self.session).run()
            finally:
                os._exit(1)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.counter = Counter(pid, read_end, targets, now)
        assert self.selector is not None  # start() made it
        self.selector.register(read_end, selectors.EVENT_READ, self.counter)
        log.info("backlog counter: %s (pid %d)", ", ".join(f"{t.pool} every {t.interval:g} s" for t in targets), pid)

    def counter_said(self, counter: Counter) -> None:
        lines = read_lines(counter)
        if lines is None:  # it is dying: reap() sees it
            self.unregister(counter)
            return
        counter.last_seen = self.now()
        for line in lines:
            self.counter_line(counter, line)

    def counter_line(self, counter: Counter, line: bytes) -> None:
        """One line of the counter: a pool's backlog (BACKLOG), or a BEAT that only says it lives."""
        message = protocol.decode(line)
        if message is None or message.word != protocol.BACKLOG or message.garbled or counter.killed:
            return
        pool = self.pools.get(message.text)
        if pool is None:
            return  # removed by a reload since it counted
        pool.backlog = message.count
        if pool.autoscaler is not None:
            pool.autoscaler.counted(message.count, pool.target)
            self.pools_changed = True  # a step may be due now

    def kill_counter(self, why: str) -> None:
        """The counter goes at once (it holds nothing: a count is read-only); reap() forgets it."""
        counter = self.counter
        if counter is None or counter.killed:
            return
        counter.killed = True
        log.debug("backlog counter (pid %d): ending it: %s", counter.pid, why)
        self.unregister(counter)
        try:
            self.system.kill(counter.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def counter_exited(self, status: int) -> None:
        counter = self.counter
        assert counter is not None  # reap() found its pid
        self.unregister(counter)
        self.counter = None
        if counter.killed or self.stopping:
            return
        delay = self.counter_backoff.next_delay()
        log.error("backlog counter died (%s): restarting it in %.1f s", describe_status(status), delay)
        self.counter_relaunch_at = self.now() + delay

    def stop_counter(self) -> None:
        """At exit: the counter goes, and is waited for."""
        if self.counter is None:
            return
        self.kill_counter("the master exits")
        self.end_helper(self.counter.pid)
        self.counter = None

    def end_helper(self, pid: int) -> None:
        """At exit: SIGKILL a helper that holds nothing (metrics, counter), and wait for it."""
        try:
            self.system.kill(pid, signal.SIGKILL)
            self.system.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def export_metrics(self, now: float) -> None:
        """Write the master's gauges: children by state, targets, pool states, the oldest beat's age.

        At most once per EXPORT_INTERVAL: the loop passes many times a second
        with hundreds of children beating, and a scrape comes every 15 s or so.
        """
        if self.metrics_socket is None or now < self.next_export:
            return
        self.next_export = now + EXPORT_INTERVAL
        family = metrics.families()
        counts: dict[tuple[str, str], int] = {}
        ages: dict[str, float] = {}
        for pool in [*self.pools.values(), *self.draining]:  # a replaced pool's children count under its name
            for child in pool.children.values():
                key = (pool.name, child.state.value)
                counts[key] = counts.get(key, 0) + 1
                ages[pool.name] = max(ages.get(pool.name, 0.0), now - child.last_seen)
        for key in self.metrics_exported - counts.keys():  # a state no child is in any more
            family.children.labels(*key).set(0)
        for key, count in counts.items():
            family.children.labels(*key).set(count)
        self.metrics_exported = set(counts)
        for name in self.metrics_pools - self.pools.keys():  # removed from the ini: zeros, not its last values
            family.target.labels(name).set(0)
            family.heartbeat_age.labels(name).set(0)
            family.min_children.labels(name).set(0)
            family.max_children.labels(name).set(0)
            family.backlog.labels(name).set(math.nan)  # not counted any more: unknown, not empty
            for state in PoolState:
                family.pool_state.labels(name, state.value).set(0)
        for name in self.pools.keys() - self.metrics_pools:  # new: its counters show 0, not nothing
            for reason in RESTART_REASONS:
                family.restarts.labels(name, reason)
            for direction, reason in SCALE_REASONS:
                family.scale_steps.labels(name, direction, reason)
        self.metrics_pools = set(self.pools)
        for pool in self.pools.values():
            family.target.labels(pool.name).set(pool.target)
            family.min_children.labels(pool.name).set(pool.spec.processes)
            family.max_children.labels(pool.name).set(max(pool.spec.scale_max, pool.spec.processes))
            family.backlog.labels(pool.name).set(math.nan if pool.backlog is None else pool.backlog)
            family.heartbeat_age.labels(pool.name).set(ages.get(pool.name, 0.0))
            for state in PoolState:
                family.pool_state.labels(pool.name, state.value).set(1 if pool.health.state is state else 0)

    # -- registration: once per pool and version, in a throwaway process

    def needs_registration(self, spec: PoolSpec) -> bool:
        factory = spec.factory
        registers_types = optional(factory, "register_types") is not None and optional(factory, "register")
        return self.config.master.register_domains or registers_types

    def make_pool(self, spec) -> Pool:
        pool = Pool(spec, self.now, self.rng, registration=self.needs_registration(spec), registry=self.by_pid)
        # Polls need the domain, not the types (no task of an unregistered type
        # can exist): only a domain being registered holds the first children.
        pool.may_serve = pool.registration == "done" or not self.config.master.register_domains
        return pool

    def start_registration(self, pool: Pool) -> None:
        """Fork a registrar for ``pool``: SWF calls (which may be throttled) never run in the loop or a boot."""
        pid = self.fork(pool, failed_start=False) if not self.stopping else None
        if pid is None:
            pool.registration, pool.registration_retry_at = (
                "failed",
                self.now() + pool.registration_backoff.next_delay(),
            )
            return
        if pid == 0:  # the registrar: never returns
            self.close_in_child()
            try:
                RegistrarProcess(
                    pool.spec,
                    self.endpoint,
                    self.pid,
                    register_domain=self.config.master.register_domains,
                    timeout=REGISTRATION_TIMEOUT,
                    session=self.session,
                ).run()
            finally:
                os._exit(1)
        pool.registration = "running"
        self.registrars[pid] = Registrar(pid, pool, self.now() + REGISTRATION_TIMEOUT)

    def restart_registration(self, pool: Pool) -> None:
        """Register ``pool`` anew: a registrar still running (against a dead endpoint, old settings) ends."""
        for registrar in self.registrars.values():
            if registrar.pool is pool and not registrar.superseded:
                if not registrar.killed:
                    self.system.kill(registrar.pid, signal.SIGKILL)
                registrar.killed = registrar.superseded = True
        pool.registration, pool.registration_retry_at = "pending", 0.0

    def registrar_exited(self, registrar: Registrar, status: int) -> None:
        pool = registrar.pool
        if registrar.superseded:
            return
        self.pools_changed = True
        pool.may_serve = True  # whatever the outcome: children find out for themselves, and say so
        if status == 0:
            pool.registration = "done"
            pool.registration_backoff.reset()
            return
        if self.stopping or pool.draining:
            return
        delay = pool.registration_backoff.next_delay()
        pool.registration, pool.registration_retry_at = "failed", self.now() + delay
        log.error("registration failed: %s (%s); retrying in %.0f s", pool.name, describe_status(status), delay)

    def preload(self) -> None:
        """Import the pools' modules and warm boto3's SWF model before fork; then freeze the heap."""
        for spec in self.config.pools.values():
            try:
                spec.preload()
            except swf.CaravanError as exc:
                log.error("preload: %s: %s (its children will try again)", spec.name, exc)
        # One session with the SWF model and endpoint rules loaded (botocore's
        # loader caches them per session): a child's clients then take ~13 ms, not ~60.
        try:
            self.session = swf.warm_session(self.endpoint)
            # The poll client itself, built once here (no request made: no connection to inherit):
            # building it took a child ~9 ms, half of a restart, and memory of its own.
            self.poll_client = swf.make_client(self.endpoint, poll=True, session=self.session)
        except swf.CaravanError as exc:  # a bad profile or region: each child says so as it fails to boot
            log.error("preload: %s", exc)
        gc.freeze()  # keep the preloaded objects out of the children's collections: pages stay shared


STACK_DIR_PREFIX = "caravand-stacks-"


def make_stack_dir(pid: int) -> str:
    """A private directory for the children's stack dump files (see metrics.make_private_dir)."""
    return metrics.make_private_dir(STACK_DIR_PREFIX, pid)


def read_lines(reader: Child | Counter) -> list[bytes] | None:
    """The whole lines waiting in ``reader``'s pipe (a part line stays in its buffer); None once it closed.

    An empty list: nothing to read now (a wake-up of the selector that another read took).
    """
    try:
        data = os.read(reader.fd, 65536)
    except BlockingIOError:
        return []
    except OSError:
        data = b""
    if not data:
        return None
    reader.buffer += data
    *lines, reader.buffer = reader.buffer.split(b"\n")
    return lines


def killed_from_outside(status: int) -> bool:
    """Ended by SIGKILL or SIGTERM: signals that people and tools send, never a program's own failure."""
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGTERM)


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(signum).name}"
        except ValueError:
            return f"killed by signal {signum}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
