"""What runs in a forked child: one poller, its state told to the master.

The child tells the master what it does, one line at a time over its pipe,
in the words of caravand.protocol (the ``Reporter`` here sends them): BOOTED
once its poller is built (its types are registered by the master's
registrar, not by each child), then POLLING, PAGING, WORKING and IDLE with
their deadlines, DONE after each task, BEAT from a thread, and FAILED just
before it exits as a failed start: it could not boot, or its polls keep
failing with an error no retry can fix.

Signals: TERM stops after the poll in flight and the task in hand; ALRM,
which the master sends ALARM_MARGIN before its SIGKILL when a stop's
deadline comes, fails a task still in hand with ``worker-shutdown`` (so SWF
retries it at once) and exits; QUIT abandons the long poll if no task is in
hand (SWF may then hand a task to the dropped poll: it waits for its
timeout; that is the price of a fast stop), else stops after the task; INT
and HUP are the master's business and ignored; USR1 reopens log files. The
child never outlives the master for long: the kernel sends it SIGUSR2
(PR_SET_PDEATHSIG; the beat thread's parent check where that is missing),
and it stops as on TERM, with its own deadline that lets the poll in
flight end by itself (a poll dropped now could still be handed a task).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

import setproctitle

from caravand import metrics, protocol, registration, swf
from caravand.activity_worker import FAIL_IN_HAND_BUDGET
from caravand.config import ALARM_MARGIN, PoolSpec
from caravand.contracts import PollerLike, optional, start_poller
from caravand.pdeath import parent_is, set_parent_death_signal
from caravand.poller import Fanout, Hooks, PollerGaveUp
from caravand.sigmask import ASYNC_SIGNALS, start_quiet
from caravand.states import ChildState
from caravand.swf import CaravanError

log = logging.getLogger(__name__)

EXIT_OK = 0
#: The child could not start: its modules failed to import, registration failed...
EXIT_BOOT_FAILED = 3
#: The master vanished and the child had to leave at once.
EXIT_ORPHANED = 4

BEAT_INTERVAL = 5.0
ORPHAN_SIGNAL = signal.SIGUSR2
#: The master blocks these around fork; the child unblocks them once its handlers are in.
HANDLED_SIGNALS = ASYNC_SIGNALS  # ORPHAN_SIGNAL (SIGUSR2) among them


class FastExit(BaseException):
    """Raised in the main thread to abandon a poll in flight (QUIT, orphan).

    A BaseException, so that no ``except Exception`` on the way swallows it.
    """


def die_with_parent(parent_pid: int) -> bool:
    """Ask for ORPHAN_SIGNAL when the master dies; exit if it already has. True if the kernel will tell us."""
    armed = set_parent_death_signal(ORPHAN_SIGNAL)
    if not parent_is(parent_pid):  # the master died before prctl took effect
        os._exit(EXIT_ORPHANED)
    return armed


class Reporter(Hooks):
    """Poller hooks that tell the master, over the pipe, what this child is doing (caravand.protocol).

    The process title says it too, for ``ps``: ``booted`` until the first
    poll, then what the child does.
    """

    def __init__(self, fd: int, title: str, parent_pid: int):
        self.fd = fd
        self.title = title
        self.parent_pid = parent_pid
        self.state = ChildState.BOOTING
        self.task_in_hand = False
        self.last_sent = time.monotonic()

    def send(self, line: bytes) -> None:
        self.last_sent = time.monotonic()  # a float store: atomic enough for the beat thread's reading
        try:
            os.write(self.fd, line)
        except OSError:  # the master is gone: the pdeath signal or the beat check ends us
            pass

    def show(self, what: str) -> None:
        setproctitle.setproctitle(f"{self.title} {what}")

    def booted(self) -> None:
        self.state = ChildState.IDLE
        self.show("booted")
        self.send(protocol.booted())

    def busy(self, state: ChildState, deadline: float | None) -> None:
        self.state = state
        self.show(state.value)
        self.send(protocol.busy(state, deadline))

    def idle(self) -> None:
        self.state = ChildState.IDLE
        self.show(ChildState.IDLE.value)
        self.send(protocol.idle())

    def poll_started(self, poller, deadline):
        self.busy(ChildState.POLLING, deadline)

    def paging_started(self, poller, deadline):
        self.busy(ChildState.PAGING, deadline)

    def failed(self, reason: str) -> None:
        """Tell the master why this child gives up, before it exits as a failed start."""
        self.send(protocol.failed(swf.one_line(reason, protocol.MAX_REASON)))

    def poll_ended(self, poller, got_task, seconds):
        # A task received is a task in hand from this instant: a fast stop
        # must not abandon it any more.
        self.task_in_hand = got_task
        if not got_task:
            self.idle()

    def task_started(self, poller, task, deadline):
        self.task_in_hand = True
        self.busy(ChildState.WORKING, deadline)

    def task_ended(self, poller, task, outcome, seconds):
        self.task_in_hand = False
        self.state = ChildState.IDLE  # DONE says so: the master needs no IDLE after it
        self.show(ChildState.IDLE.value)
        self.send(protocol.done(outcome))

    def beat_forever(self, interval: float = BEAT_INTERVAL) -> None:
        """Run in a daemon thread: BEAT when the child said nothing for ``interval`` s.

        Any line tells the master that the child lives; a BEAT besides would
        only wake its loop once more (hundreds of children polling make
        thousands of lines a minute). If the master is gone and the kernel
        could not tell us (no PR_SET_PDEATHSIG), raise the orphan signal
        ourselves: one way out.
        """
        while True:
            time.sleep(interval)
            if not parent_is(self.parent_pid):
                os.kill(os.getpid(), ORPHAN_SIGNAL)
                return
            self.beat_if_quiet(interval)

    def beat_if_quiet(self, interval: float = BEAT_INTERVAL) -> bool:
        """BEAT unless a line went out in the last half ``interval``; True if it did."""
        if time.monotonic() - self.last_sent < interval / 2:
            return False
        self.send(protocol.beat())
        return True


class ChildProcess:
    """The life of one forked child, from fork to ``os._exit``; never returns."""

    def __init__(
        self,
        pool: PoolSpec,
        index: int,
        endpoint,
        write_fd: int,
        parent_pid: int,
        session=None,
        log_file: str | None = None,
        stack_file: str | None = None,
        poll_client=None,
    ):
        self.session = session
        self.poll_client = poll_client
        self.log_file = log_file
        self.stack_file = stack_file
        self.pool = pool
        self.index = index
        self.endpoint = endpoint
        self.parent_pid = parent_pid
        self.title = f"caravand: {pool.kind} {pool.name}#{index} [{pool.domain}/{pool.task_list}]"
        self.reporter = Reporter(write_fd, self.title, parent_pid)
        self.recorder: metrics.Recorder | None = None  # with metrics on
        self.poller: PollerLike | None = None
        self.stop_requested = False
        self.fast_exit_raised = False
        self.orphan_timer_armed = False

    def run(self) -> None:
        code = 1
        try:
            try:
                code = self.main()
            except FastExit:
                code = EXIT_OK
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("child crashed: %s#%d", self.pool.name, self.index)
                code = 1
        finally:
            # No handler may run past this point: the way out is os._exit, always.
            signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def main(self) -> int:
        self.pool.apply_pythonpath()  # first: before anything imports the pool's modules
        die_with_parent(self.parent_pid)
        self.install_signals()
        self.enable_stack_dumps()
        self.reporter.show(ChildState.BOOTING.value)
        start_quiet(threading.Thread(target=self.reporter.beat_forever, name="beat", daemon=True))
        try:
            poller = self.poller = self.pool.make_poller(
                self.endpoint, identity=f"{os.uname().nodename}:{os.getpid()}", hooks=self.hooks()
            )
            start_poller(poller, self.session, self.poll_client)
        except CaravanError as exc:
            log.error("failed to boot: %s#%d: %s", self.pool.name, self.index, exc)
            self.reporter.failed(str(exc))
            return EXIT_BOOT_FAILED
        except Exception as exc:
            log.exception("failed to boot: %s#%d", self.pool.name, self.index)
            self.reporter.failed(f"{type(exc).__name__}: {exc}")
            return EXIT_BOOT_FAILED
        self.reporter.booted()
        if self.stop_requested:
            return EXIT_OK
        try:
            poller.run_forever()
        except PollerGaveUp as exc:
            log.error("gave up: %s#%d: %s", self.pool.name, self.index, exc)
            self.reporter.failed(str(exc))
            return EXIT_BOOT_FAILED
        return EXIT_OK

    def hooks(self) -> Hooks:
        """The reporter to the master, and the metrics' recorder when the master serves metrics."""
        if not metrics.enabled():
            return self.reporter
        pool = self.pool
        self.recorder = metrics.Recorder(pool.name, pool.kind, pool.domain, pool.task_list)
        return Fanout(self.reporter, self.recorder)

    def enable_stack_dumps(self) -> None:
        """SIGABRT from the master dumps every thread's stack: to our own file, which the master logs.

        One file per child: children aborted together would interleave
        their dumps on a shared stderr. No core file follows the abort: the
        stack is what helps, and several hung children dumping preloaded
        heaps at once would load the machine for nothing.
        """
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        except (OSError, ValueError):
            pass
        if self.stack_file:
            try:
                faulthandler.enable(file=open(self.stack_file, "w"), all_threads=True)  # noqa: SIM115 - for life
                return
            except OSError:
                pass
        faulthandler.enable(file=sys.stderr, all_threads=True)

    # -- signals: handlers set flags, or raise FastExit to abandon a poll

    def install_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGQUIT, self.on_quit)
        signal.signal(ORPHAN_SIGNAL, self.on_orphaned)
        signal.signal(signal.SIGUSR1, self.on_usr1)
        signal.signal(signal.SIGALRM, self.on_deadline)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)  # what came meanwhile is delivered now

    def request_stop(self) -> None:
        self.stop_requested = True
        if self.poller is not None:
            self.poller.stop()

    def on_term(self, signum, frame) -> None:
        # The master owns the deadline: it sends SIGALRM shortly before its SIGKILL.
        self.request_stop()

    def on_orphaned(self, signum, frame) -> None:
        """The master died: stop as on TERM, with our own deadline, since nobody will send SIGALRM now.

        The poll in flight ends by itself (SWF may still hand it a task); a
        task in hand then has ALARM_MARGIN before SIGALRM fails it.
        """
        self.request_stop()
        if not self.orphan_timer_armed:
            self.orphan_timer_armed = True
            signal.setitimer(signal.ITIMER_REAL, self.endpoint.poll_read_timeout + ALARM_MARGIN)

    def on_quit(self, signum, frame) -> None:
        """QUIT (from the master): stop now unless a task is in hand."""
        self.request_stop()
        abortable = self.poller is None or optional(self.poller, "abortable")
        if abortable and not self.fast_exit_raised:
            # Only while booting or inside the long poll itself, before any task
            # exists; and only once, so that it cannot strike the way out.
            self.fast_exit_raised = True
            raise FastExit

    def on_usr1(self, signum, frame) -> None:
        def reopen():
            if self.log_file:
                reopen_output(self.log_file)
            reopen_log_files()
            log.info("reopened log files (USR1): %s#%d", self.pool.name, self.index)

        start_quiet(threading.Thread(target=reopen, name="reopen-logs", daemon=True))

    def on_deadline(self, signum, frame) -> None:
        """The stop's deadline passed with a task still in hand: fail it so SWF retries it now."""

        def fail_and_exit():
            # An answer of finished work being retried now must not be cut:
            # it gets what the margin allows first.
            poller = self.poller  # None: it was still booting, nothing is in hand
            wait_for_answer = None if poller is None else optional(poller, "wait_for_answer")
            if wait_for_answer is not None and not wait_for_answer(FAIL_IN_HAND_BUDGET):
                log.warning("deadline: %s#%d: an answer was still in flight", self.pool.name, self.index)
            fail = None if poller is None else optional(poller, "fail_task_in_hand")
            if fail is not None:
                try:
                    if fail("worker-shutdown") and self.recorder is not None:
                        self.recorder.task_failed_at_shutdown()
                except Exception:
                    log.exception("could not fail the task in hand")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_OK)

        # Not in the handler: the main thread may hold a lock the call needs.
        start_quiet(threading.Thread(target=fail_and_exit, name="deadline", daemon=True))


def reopen_output(path: str) -> None:
    """Point stdout and stderr (fds 1 and 2) at ``path`` anew: --daemon's log file, after logrotate moved it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        log.error("cannot reopen %s: %s (still writing to the old file)", path, exc.strerror)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_helper(main: Callable[[], int], failure: str) -> NoReturn:
    """End a throwaway child of the master with ``main()``'s exit code, 1 if it raised (logged as ``failure``).

    It never returns: the master's code must not go on in a child.
    """
    code = 1
    try:
        code = main()
    except BaseException:
        log.exception(failure)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def become_helper(parent_pid: int, title: str) -> None:
    """What a throwaway child of the master (a registrar, an import check) does first after fork.

    It dies with the master, leaves the master's signals (INT, HUP, USR1,
    TTIN, TTOU) to the master, and ends at once on TERM or KILL: it holds no
    task, and what it does (SWF registrations, imports) can be done again.
    """
    die_with_parent(parent_pid)
    signal.set_wakeup_fd(-1)
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    setproctitle.setproctitle(title)


class RegistrarProcess:
    """A throwaway child that registers one pool's domain (if asked) and types, then exits 0, or 1 on failure.

    The master forks it once per pool and version, so that neither its loop
    nor a child's boot waits on SWF (which throttles a fleet deploy).
    """

    def __init__(
        self, pool: PoolSpec, endpoint, parent_pid: int, *, register_domain: bool, timeout: float, session=None
    ):
        self.pool = pool
        self.endpoint = endpoint
        self.parent_pid = parent_pid
        self.register_domain = register_domain
        self.timeout = timeout
        self.session = session

    def run(self) -> NoReturn:
        run_helper(self.main, f"registration failed: {self.pool.name}")

    def main(self) -> int:
        become_helper(self.parent_pid, f"caravand: register {self.pool.name} [{self.pool.domain}]")
        # The master kills us at `timeout`; stop retrying a little before, to say why.
        deadline = time.monotonic() + self.timeout * 0.9
        try:
            self.pool.apply_pythonpath()  # a factory of one's own imports its types from there
            client = swf.make_client(self.endpoint, session=self.session or swf.make_session(self.endpoint))
            registration.register_pool(client, self.pool, register_domain_too=self.register_domain, deadline=deadline)
        except CaravanError as exc:
            log.error("registration failed: %s: %s", self.pool.name, exc)
            return 1
        return EXIT_OK


class MetricsProcess:
    """The child that serves ``/metrics`` from the master's listening socket; never returns.

    The master binds the socket (a port in use is a startup error) and
    never serves a request itself: a scraper that is slow, silent or
    hostile holds a thread of this process at most, never the master's loop.
    """

    def __init__(self, sock, parent_pid: int, address: str):
        self.sock = sock
        self.parent_pid = parent_pid
        self.address = address

    def run(self) -> NoReturn:
        run_helper(self.serve, f"metrics endpoint failed: {self.address}")

    def serve(self) -> int:
        become_helper(self.parent_pid, f"caravand: metrics {self.address}")
        metrics.serve(self.sock)
        return 1  # serve() returns only if it broke


def run_import_check(config, fd: int, parent_pid: int) -> None:
    """In a throwaway child of the master: import the pools' modules of ``config``; exit 0, or 1 with one line on ``fd``.

    The reload waits for this verdict (without blocking its loop), so that a
    module that fails to import is refused like a bad key, never crash-looped.
    """
    from caravand.loader import report_pool_imports

    code = 1
    try:
        become_helper(parent_pid, f"caravand: check [{config.path}]")
        code = report_pool_imports(config, fd)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def reopen_log_files() -> None:
    """Reopen every file a logging FileHandler writes (after logrotate moved it)."""
    for handler in logging.root.handlers + [
        h for logger in logging.Logger.manager.loggerDict.values() for h in getattr(logger, "handlers", [])
    ]:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                stream = handler._open()
            except OSError as exc:  # a removed directory must not take the process down
                log.error("cannot reopen %s: %s (still writing to the old file)", handler.baseFilename, exc)
                continue
            finally:
                handler.release()
            handler.acquire()
            try:
                old, handler.stream = handler.stream, stream
                if old:
                    old.close()
            finally:
                handler.release()
