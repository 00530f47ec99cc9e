"""A faithful local SWF: moto's SWF emulator, mended where it departs from SWF's documented behaviour.

The embedded endpoint (:mod:`caravand.embedded`) serves moto's SWF backend
over HTTP. Stock moto 5.2 makes local runs, and our own tests, lie:

1. **No long polls.** An empty poll sleeps 1 s and returns (moto's own
   "TODO long polling"): a task scheduled meanwhile waits up to a second,
   and every idle poller costs a call a second. Here an empty poll is held
   up to ``poll_hold`` seconds (SWF: 60) and answered as soon as a task for
   its (domain, kind, task list) is there: one condition per list, so a task
   wakes the pollers of its own list only (waking every poll on any change
   made 50 signals take 7.7 s with 600 executions; per list, 0.65 s).
2. **Held polls and a fast stop.** A master that stops its children must not
   wait for their 60 s polls: :meth:`Emulator.release_polls` answers every
   held poll empty, and for :data:`RELEASE_WINDOW` seconds after, answers a
   new poll at once (one that was on the wire is not held either).
3. **Tasks delivered twice.** moto has no lock: werkzeug serves each request
   on its own thread, and timers fire on their own threads. Here every SWF
   action (its rendering included), every timer and the timeout tick run
   under one lock, and a decision task is never scheduled while one is
   already scheduled, nor while one is started (SWF schedules it when the
   started one completes): a start and 2 signals make 1 DecisionTaskScheduled.
4. **Activity timeouts.** moto enforces only HEARTBEAT, clocked from
   scheduling, never decrements ``openActivityTasks`` on a timeout, and
   answers a late respond with ValueError (HTTP 500). Here SCHEDULE_TO_START,
   SCHEDULE_TO_CLOSE, START_TO_CLOSE and HEARTBEAT (from the start) are
   enforced, the earliest due first, on a tick about every second (moto
   checked them only when a call came, scanning every execution ever made),
   and a late respond gets UnknownResourceFault, as from SWF.
5. **A leak.** moto keeps every model object it ever made in a class list
   (for its dashboard), a ``Timeout`` per execution per call included: 45 MB
   in 30 s with 600 open executions. Here SWF's models are not tracked, no
   call makes a Timeout, and closed executions are purged once past their
   domain's retention.
6. **State across restarts** (:meth:`Emulator.save`, :meth:`Emulator.load`):
   a pickle of the SWF backends, stamped with moto's version. Locks are
   dropped, and each timer is saved as its due time and re-armed only once
   the whole state is loaded (re-armed while loading, one fired into a
   half-loaded domain).

Everything is patched in this process only, by :func:`install`, and undone
by :func:`uninstall` (the unit tests share their process with in-process
moto). The patches are written against moto :data:`MOTO_VERSION`:
:func:`install` fails loudly if a function it patches is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from caravand.swf import SWF_POLL_HOLD, ConfigError

log = logging.getLogger(__name__)

#: The moto the patches are written and tested against (setup.py pins it).
MOTO_VERSION = "5.2.5"
#: Timeouts are processed, closed executions purged and the state saved about this often.
TICK = 1.0
#: After a release, new polls are answered at once for this long (they were on the wire).
RELEASE_WINDOW = 0.5
#: The state is saved at most this often while it changes (and on stop).
SAVE_INTERVAL = 1.0
#: The layout of a state file: a header (this, moto's version), then the backends.
STATE_FORMAT = 1
DAY = 86400.0
OPEN_STATES = ("SCHEDULED", "STARTED")
#: The decisions moto carries out; another would raise after the task was completed, leaving it stuck.
HANDLED_DECISIONS = frozenset(
    {
        "CompleteWorkflowExecution",
        "FailWorkflowExecution",
        "CancelWorkflowExecution",
        "ScheduleActivityTask",
        "RecordMarker",
        "StartTimer",
        "CancelTimer",
    }
)
#: Calls that change nothing: the state is not saved for them.
READ_ONLY_PREFIXES = ("List", "Describe", "Count", "Get", "Poll")


class MotoMismatch(ConfigError):
    """The installed moto lacks a function the emulator patches: it is not the version they were written for."""


class Emulator:
    """The patched backends' shared state in this process: the lock, the held polls, the tick, the state file."""

    def __init__(self, poll_hold: float = SWF_POLL_HOLD, *, clock: Callable[[], float] = time.time):
        #: Every SWF action, timer and tick holds it; a held poll releases it while it waits.
        self.lock = threading.RLock()
        self.poll_hold = poll_hold
        #: Wall time, as moto's timestamps (they are saved and read back by another process).
        self.clock = clock
        self.conditions: dict[tuple, threading.Condition] = {}
        self.held: dict[tuple, int] = {}  # polls waiting now, per (account, region, domain, kind, list)
        self.release_generation = 0
        self.release_until = float("-inf")  # time.monotonic(): new polls are not held until then
        self.tokens: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self.changes = 0  # counts changes to the state; saved_changes, the count the file holds
        self.saved_changes = 0
        self.saved_at = float("-inf")
        self.state_path: str | None = None
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None
        #: The backends it ticks and saves: every SWF backend of this process (one per account and region used).
        self.backends: Callable[[], list] = all_backends

    # -- held polls

    def hold(self, backend, domain_name: str, kind: str, task_list: str, take: Callable[[Any], Any]):
        """``take(domain)``'s task, waiting for one up to ``poll_hold``; None when the hold ends or is released."""
        with self.lock:
            if time.monotonic() < self.release_until:
                return None  # on the wire when its owner released the polls: not held
            generation = self.release_generation
            deadline = time.monotonic() + self.poll_hold
            key = (backend.account_id, backend.region_name, domain_name, kind, task_list)
            while True:
                task = take(backend._get_domain(domain_name))  # a domain gone meanwhile (reset): unknown
                if task is not None:
                    return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                condition = self.conditions.get(key)
                if condition is None:
                    condition = self.conditions[key] = threading.Condition(self.lock)
                self.held[key] = self.held.get(key, 0) + 1
                try:
                    condition.wait(remaining)
                finally:
                    self.held[key] -= 1
                if generation != self.release_generation:
                    return None

    def held_polls(self) -> dict[str, int]:
        """How many polls are held now, by ``domain/kind/task list`` (for tests and curious people)."""
        with self.lock:
            return {f"{key[2]}/{key[3]}/{key[4]}": count for key, count in self.held.items() if count}

    def notify(self, domain, kind: str, task_list: str) -> None:
        """A task is there: wake the polls held on its list, and only those."""
        with self.lock:  # held already by every caller but a test's
            condition = self.conditions.get((domain.account_id, domain.region_name, domain.name, kind, task_list))
            if condition is not None:
                condition.notify_all()

    def release_polls(self, *, forever: bool = False) -> None:
        """Answer every held poll empty; hold no new one for RELEASE_WINDOW seconds (``forever``: stopping)."""
        with self.lock:
            self.release_generation += 1
            self.release_until = float("inf") if forever else time.monotonic() + RELEASE_WINDOW
            for condition in self.conditions.values():
                condition.notify_all()

    # -- timeouts and retention

    def start_ticker(self) -> None:
        """Process timeouts, purge and save about every TICK seconds, on a daemon thread."""
        self._ticker = threading.Thread(target=self._tick_forever, name="swf-emulator-tick", daemon=True)
        self._ticker.start()

    def _tick_forever(self) -> None:
        while not self._stopping.wait(TICK):
            try:
                self.tick()
                self.save_if_changed()
            except Exception:  # the endpoint must go on: a bug here is logged, the next tick tries again
                log.exception("SWF emulator: tick failed")

    def tick(self, backends=None) -> None:
        """Time out what is due, and purge closed executions past their domain's retention."""
        with self.lock:
            now = self.clock()
            for backend in backends if backends is not None else self.backends():
                for domain in backend.domains:
                    process_domain_timeouts(domain, now)
                    if purge_closed(domain, now):
                        self.changes += 1

    def stop(self) -> None:
        """Stop the tick; save the state one last time (if kept)."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self.state_path:
            self.save(self.state_path)

    # -- the state file

    def dumps(self, backends=None) -> bytes:
        """The state of ``backends`` (default: every SWF backend of this process), as a state file holds it."""
        import moto

        with self.lock:
            header = {"format": STATE_FORMAT, "moto": moto.__version__, "saved": time.time()}
            state = {
                (b.account_id, b.region_name): {"domains": b.domains, "tagger": b.tagger}
                for b in (backends if backends is not None else self.backends())
            }
            data = pickle.dumps(header, pickle.HIGHEST_PROTOCOL) + pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
            self.saved_changes = self.changes
        return data

    def save(self, path: str) -> None:
        """Write the state to ``path`` whole or not at all (a temporary file beside it, renamed)."""
        data = self.dumps()
        self.saved_at = time.monotonic()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def save_if_changed(self) -> None:
        if self.state_path and self.changes != self.saved_changes:
            if time.monotonic() - self.saved_at >= SAVE_INTERVAL:
                self.save(self.state_path)

    def load(self, path: str, backend_for: Callable[[str, str], Any] | None = None) -> str | None:
        """Load the state ``path`` holds, if any; returns why it was discarded (a warning), or None.

        ``backend_for(account, region)``: where a backend's state goes
        (default: moto's own backend of that account and region).
        """
        import moto

        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, whatever happens
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"embedded_state {path}: cannot read it ({exc.strerror}): starting empty"
        rearm: list[tuple] = []
        try:
            with f:
                header = pickle.load(f)
                if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
                    return f"embedded_state {path}: not a state file of this caravand: discarded, starting empty"
                if header.get("moto") != moto.__version__:
                    return (
                        f"embedded_state {path}: saved by moto {header.get('moto')}, this is moto "
                        f"{moto.__version__}: discarded, starting empty"
                    )
                with self.lock, rearming(rearm):
                    state = pickle.load(f)
        except Exception as exc:  # a truncated or foreign file: the endpoint starts empty, and says why
            return f"embedded_state {path}: unreadable ({type(exc).__name__}: {exc}): discarded, starting empty"
        backend_for = backend_for or moto_backend
        with self.lock:
            for (account, region), saved in state.items():
                backend = backend_for(account, region)
                backend.domains, backend.tagger = saved["domains"], saved["tagger"]
                for domain in backend.domains:
                    for task in [*domain.decision_tasks, *domain.activity_tasks]:
                        self.tokens[task.task_token] = task
            # Only now, with every domain whole: a timer due meanwhile fires at once.
            for execution, timer_id, started_event_id, due in rearm:
                arm_timer(execution, timer_id, started_event_id, due)
            self.saved_changes = self.changes
        return None


#: The emulator of this process, once installed.
_emulator: Emulator | None = None
#: (owner, name, the owner's own value before, or _ABSENT): what uninstall() puts back.
_patched: list[tuple[Any, str, Any]] = []
_ABSENT = object()
#: Timers found while a state loads: (execution, timer id, started event id, due), armed once it is whole.
_rearm: list[tuple] | None = None


def current() -> Emulator:
    assert _emulator is not None, "caravand.emulator.install() first"
    return _emulator


def now() -> float:
    """The emulator's clock: moto's SWF models stamp their times with it (tests move it)."""
    return current().clock()


@contextlib.contextmanager
def rearming(into: list) -> Iterator[None]:
    global _rearm
    _rearm = into
    try:
        yield
    finally:
        _rearm = None


def all_backends() -> list:
    """Every SWF backend this process has made (one per account and region used)."""
    from moto.swf.models import swf_backends

    return [backend for account in list(swf_backends.values()) for backend in list(account.values())]


def moto_backend(account: str, region: str):
    from moto.swf.models import swf_backends

    return swf_backends[account][region]


# -- what the patched methods call


def is_open(task) -> bool:
    return task.state in OPEN_STATES


def timeout_seconds(value) -> float | None:
    """A timeout as SWF gives it ("300", or "NONE": none)."""
    if value is None or value == "NONE":
        return None
    return float(value)


def activity_due(task) -> tuple[float, str] | None:
    """When ``task`` times out and how, the earliest of its four timeouts; None: never (or not open)."""
    if not is_open(task):
        return None
    due = []
    clocks = [("SCHEDULE_TO_CLOSE", "scheduleToCloseTimeout", task.scheduled_timestamp)]
    if task.state == "SCHEDULED":
        clocks.append(("SCHEDULE_TO_START", "scheduleToStartTimeout", task.scheduled_timestamp))
    else:  # STARTED: the heartbeat clock runs from the start, and from each heartbeat
        clocks.append(("START_TO_CLOSE", "startToCloseTimeout", task.started_timestamp))
        clocks.append(("HEARTBEAT", "heartbeatTimeout", task.last_heartbeat_timestamp))
    for kind, key, since in clocks:
        seconds = timeout_seconds(task.timeouts.get(key))
        if seconds is not None:
            due.append((since + seconds, kind))
    return min(due) if due else None


def decision_due(task) -> tuple[float, str] | None:
    if task.state != "STARTED":
        return None
    seconds = timeout_seconds(task.start_to_close_timeout)
    return None if seconds is None else (task.started_timestamp + seconds, "START_TO_CLOSE")


def execution_due(execution) -> tuple[float, str] | None:
    seconds = timeout_seconds(execution.execution_start_to_close_timeout)
    if not execution.open or not execution.start_timestamp or seconds is None:
        return None
    return execution.start_timestamp + seconds, "START_TO_CLOSE"


def process_timeouts(execution, tasks: list, now: float) -> None:
    """Time out what is due in ``execution`` (``tasks``: its decision and activity tasks), earliest first.

    One timeout changes what follows (a timed-out execution makes its tasks'
    timeouts moot; a timed-out task schedules a decision): so one at a time.
    """
    from moto.swf.models import ActivityTask, DecisionTask, Timeout

    while execution.open:
        due = [(execution_due(execution), execution)]
        due += [(decision_due(t) if isinstance(t, DecisionTask) else activity_due(t), t) for t in tasks]
        reached = [(when, obj) for when, obj in due if when is not None and when[0] <= now]
        if not reached:
            return
        (timestamp, kind), obj = min(reached, key=lambda item: item[0][0])
        timeout = Timeout(obj, timestamp, kind)
        if obj is execution:
            execution.timeout(timeout)
            execution.close_timestamp = execution.close_timestamp or timestamp
        elif isinstance(obj, ActivityTask):
            execution.timeout_activity_task(timeout)
            execution.open_counts["openActivityTasks"] -= 1  # moto forgets it: the count only grew
            execution.schedule_decision_task()
        else:
            execution.timeout_decision_task(timeout)
            execution.open_counts["openDecisionTasks"] -= 1
            execution.schedule_decision_task()


def process_domain_timeouts(domain, now: float) -> None:
    """:func:`process_timeouts` for every open execution of ``domain``, its tasks found in one pass."""
    tasks: dict[int, list] = {}
    for task in [*domain.decision_tasks, *domain.activity_tasks]:
        if is_open(task):
            tasks.setdefault(id(task.workflow_execution), []).append(task)
    for execution in domain.workflow_executions:
        if execution.open:
            process_timeouts(execution, tasks.get(id(execution), []), now)


def execution_tasks(execution) -> list:
    return [*execution.decision_tasks, *execution.activity_tasks]


def purge_closed(domain, now: float) -> bool:
    """Forget the executions of ``domain`` closed longer than its retention ago, and their tasks; True if any."""
    retention = (timeout_seconds(domain.retention) or 0.0) * DAY
    gone = {
        id(e)
        for e in domain.workflow_executions
        if not e.open and e.close_timestamp is not None and e.close_timestamp + retention <= now
    }
    if not gone:
        return False
    domain.workflow_executions = [e for e in domain.workflow_executions if id(e) not in gone]
    for lists in (domain.decision_task_lists, domain.activity_task_lists):
        for name, tasks in lists.items():
            lists[name] = [t for t in tasks if id(t.workflow_execution) not in gone]
    return True


def take_decision_task(domain, task_list: str, identity):
    """Start and return the oldest decision task of ``task_list`` that may start, or None.

    One execution has at most one decision task started: its next one waits.
    """
    tasks = domain.decision_task_lists.get(task_list, ())
    busy = {id(t.workflow_execution) for t in tasks if t.state == "STARTED"}
    for task in tasks:  # in the order they were scheduled
        execution = task.workflow_execution
        if task.state == "SCHEDULED" and execution.open and id(execution) not in busy:
            execution.start_decision_task(task.task_token, identity=identity)
            return task
    return None


def take_activity_task(domain, task_list: str, identity):
    """Start and return the oldest scheduled activity task of ``task_list`` whose execution is open, or None."""
    for task in domain.activity_task_lists.get(task_list, ()):
        if task.state == "SCHEDULED" and task.workflow_execution.open:
            task.workflow_execution.start_activity_task(task.task_token, identity=identity)
            return task
    return None


def find_task(backend, task_token: str, kind: str):
    """The open task that ``task_token`` names, its execution's due timeouts processed first.

    SWF's answers: a token it never gave, ValidationException; a task that
    is no longer open (completed, failed, timed out) or whose execution
    closed, UnknownResourceFault (moto: a ValueError, HTTP 500).
    """
    from moto.swf.exceptions import SWFUnknownResourceFault, SWFValidationException

    task = current().tokens.get(task_token)
    if task is None or task.workflow_execution.domain not in backend.domains:
        raise SWFValidationException("Invalid token")
    execution = task.workflow_execution
    process_timeouts(execution, [t for t in execution_tasks(execution) if is_open(t)], now())
    if not execution.open:
        raise SWFUnknownResourceFault(
            "execution", f"WorkflowExecution=[workflowId={execution.workflow_id}, runId={execution.run_id}]"
        )
    if task.state != "STARTED":
        raise SWFUnknownResourceFault(f"{kind}, scheduledEventId = {task.scheduled_event_id}")
    return task


def arm_timer(execution, timer_id: str, started_event_id: int, due: float) -> None:
    """Arm a timer of ``execution`` that fires at ``due`` (at once if past), as StartTimer would have."""
    from moto.swf.models import Timer

    background = ArmedTimer(max(0.0, due - now()), execution._fire_timer, args=(started_event_id, timer_id))
    timer = Timer(background, started_event_id)
    execution._timers[timer_id] = timer
    timer.start()


class ArmedTimer(threading.Timer):
    """moto's timer thread, knowing when it is due (to be saved), and a daemon: it never holds the exit."""

    def __init__(self, interval: float, function, args=None, kwargs=None):
        super().__init__(interval, function, args, kwargs)
        self.daemon = True
        self.due = now() + float(interval)


# -- install


def install(poll_hold: float = SWF_POLL_HOLD, *, clock: Callable[[], float] = time.time) -> Emulator:
    """Patch moto's SWF in this process (once; again: new settings) and return the emulator."""
    global _emulator
    if _emulator is not None:
        _emulator.poll_hold, _emulator.clock = poll_hold, clock
        return _emulator
    _emulator = Emulator(poll_hold, clock=clock)
    try:
        _patch()
    except BaseException:
        uninstall()
        raise
    return _emulator


def uninstall() -> None:
    """Put moto back as it was (the unit tests share their process with in-process moto)."""
    global _emulator
    for owner, name, before in reversed(_patched):
        if before is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, before)
    _patched.clear()
    if _emulator is not None:
        _emulator._stopping.set()
    _emulator = None


def _moto(owner, name: str) -> Any:
    """moto's ``owner.name``, which a patch wraps; fails loudly if this moto has no such thing."""
    import moto

    try:
        return getattr(owner, name)
    except AttributeError:
        raise MotoMismatch(
            f"the embedded SWF endpoint patches moto {MOTO_VERSION}, and moto {moto.__version__} has no "
            f"{getattr(owner, '__name__', owner)}.{name}: pip install 'moto=={MOTO_VERSION}'"
        ) from None


def _replace(owner, name: str, value, *, must_exist: bool = True) -> None:
    """Put ``value`` as ``owner.name``, noting what to put back (see uninstall)."""
    if must_exist:
        _moto(owner, name)
    _patched.append((owner, name, owner.__dict__.get(name, _ABSENT)))
    setattr(owner, name, value)


def _patch() -> None:
    from moto.swf import models
    from moto.swf.models import (
        ActivityTask,
        ActivityType,
        DecisionTask,
        Domain,
        GenericType,
        HistoryEvent,
        SWFBackend,
        Timeout,
        Timer,
        WorkflowExecution,
        WorkflowType,
    )
    from moto.swf.models import activity_task as activity_task_module
    from moto.swf.models import decision_task as decision_task_module
    from moto.swf.models import history_event as history_event_module
    from moto.swf.models import timeout as timeout_module
    from moto.swf.models import workflow_execution as workflow_execution_module
    from moto.swf.responses import SWFResponse

    emulator = current()

    # 5. moto appends every model it makes to a class list, for ever: not SWF's.
    def untracked_new(cls, *args, **kwargs):
        return object.__new__(cls)

    for cls in (ActivityTask, ActivityType, DecisionTask, Domain, GenericType, HistoryEvent, Timeout, Timer,
                WorkflowExecution, WorkflowType):  # fmt: skip
        _replace(cls, "__new__", staticmethod(untracked_new), must_exist=False)

    # One clock for every time moto stamps: the tests move it.
    for module in (activity_task_module, decision_task_module, history_event_module, timeout_module,
                   workflow_execution_module):  # fmt: skip
        _replace(module, "unix_time", now)
    _replace(workflow_execution_module, "ThreadingTimer", ArmedTimer)

    # 3. One lock around every action, its answer rendered inside it (a decision
    # task's history ends at its DecisionTaskStarted); a change is to be saved.
    call_action = _moto(SWFResponse, "call_action")

    def serialized_call_action(self):
        with emulator.lock:
            if not self._get_action().startswith(READ_ONLY_PREFIXES):
                emulator.changes += 1
            return call_action(self)

    _replace(SWFResponse, "call_action", serialized_call_action)

    add_event = _moto(WorkflowExecution, "_add_event")

    def counted_add_event(self, *args, **kwargs):
        emulator.changes += 1  # a poll that started a task, a timer, a timeout: saved too
        return add_event(self, *args, **kwargs)

    _replace(WorkflowExecution, "_add_event", counted_add_event)

    # 4. Timeouts are processed by the tick (and for the execution a respond
    # names), not by scanning every execution ever made on every call.
    _replace(SWFBackend, "_process_timeouts", lambda self: None)

    # 1. Long polls.
    def poll_for_decision_task(self, domain_name, task_list, identity=None):
        return emulator.hold(self, domain_name, "decision", task_list,
                             lambda domain: take_decision_task(domain, task_list, identity))  # fmt: skip

    def poll_for_activity_task(self, domain_name, task_list, identity=None):
        return emulator.hold(self, domain_name, "activity", task_list,
                             lambda domain: take_activity_task(domain, task_list, identity))  # fmt: skip

    _replace(SWFBackend, "poll_for_decision_task", poll_for_decision_task)
    _replace(SWFBackend, "poll_for_activity_task", poll_for_activity_task)

    # The backlog, as SWF counts it: the tasks of the list that wait for a poll. moto
    # counts started ones too (and decision tasks by the execution's own list), which
    # made autoscaling see a backlog where every task was in hand.
    def count_pending_decision_tasks(self, domain_name, task_list):
        tasks = self._get_domain(domain_name).decision_task_lists.get(task_list, ())
        return sum(task.state == "SCHEDULED" and task.workflow_execution.open for task in tasks)

    def count_pending_activity_tasks(self, domain_name, task_list):
        tasks = self._get_domain(domain_name).activity_task_lists.get(task_list, ())
        return sum(task.state == "SCHEDULED" and task.workflow_execution.open for task in tasks)

    _replace(SWFBackend, "count_pending_decision_tasks", count_pending_decision_tasks)
    _replace(SWFBackend, "count_pending_activity_tasks", count_pending_activity_tasks)
    _replace(models, "sleep", lambda seconds: None)  # nothing of moto's sleeps any more

    add_decision = _moto(Domain, "add_to_decision_task_list")
    add_activity = _moto(Domain, "add_to_activity_task_list")

    def add_to_decision_task_list(self, task_list, obj):
        add_decision(self, task_list, obj)
        emulator.tokens[obj.task_token] = obj
        emulator.notify(self, "decision", task_list)

    def add_to_activity_task_list(self, task_list, obj):
        add_activity(self, task_list, obj)
        emulator.tokens[obj.task_token] = obj
        emulator.notify(self, "activity", task_list)

    _replace(Domain, "add_to_decision_task_list", add_to_decision_task_list)
    _replace(Domain, "add_to_activity_task_list", add_to_activity_task_list)

    # 3. At most one decision task scheduled per execution; one asked for
    # while another is started is scheduled when that one completes.
    schedule = _moto(WorkflowExecution, "_schedule_decision_task")

    def schedule_decision_task(self):
        states = {task.state for task in self.decision_tasks}
        if "SCHEDULED" in states or not self.open:
            return  # the scheduled one will see every event up to its start
        if "STARTED" in states:
            self.caravand_decision_pending = True
            return
        self.caravand_decision_pending = False
        schedule(self)

    _replace(WorkflowExecution, "_schedule_decision_task", schedule_decision_task)

    complete_decision = _moto(WorkflowExecution, "complete_decision_task")

    def complete_decision_task(self, task_token, decisions=None, execution_context=None):
        complete_decision(self, task_token, decisions=decisions, execution_context=execution_context)
        if getattr(self, "caravand_decision_pending", False):
            self._schedule_decision_task()

    _replace(WorkflowExecution, "complete_decision_task", complete_decision_task)

    # 4. Answers to late responds, and the four activity clocks.
    def respond_decision_task_completed(self, task_token, decisions=None, execution_context=None):
        from moto.swf.exceptions import SWFValidationException

        task = find_task(self, task_token, "decision task")
        for decision in decisions or ():
            if decision.get("decisionType") not in HANDLED_DECISIONS:
                # moto would complete the task, then raise NotImplementedError: the execution stuck.
                raise SWFValidationException(
                    f"the embedded SWF endpoint (moto) cannot carry out a {decision.get('decisionType')} decision"
                )
        task.workflow_execution.complete_decision_task(task_token, decisions=decisions,
                                                       execution_context=execution_context)  # fmt: skip

    _replace(SWFBackend, "respond_decision_task_completed", respond_decision_task_completed)
    _replace(SWFBackend, "_find_activity_task_from_token", lambda self, token: find_task(self, token, "activity"))

    activity_init = _moto(ActivityTask, "__init__")

    def init_activity_task(self, *args, **kwargs):
        activity_init(self, *args, **kwargs)
        self.scheduled_timestamp = now()
        self.started_timestamp = None

    _replace(ActivityTask, "__init__", init_activity_task)

    activity_start = _moto(ActivityTask, "start")

    def start_activity_task(self, started_event_id):
        activity_start(self, started_event_id)
        self.started_timestamp = self.last_heartbeat_timestamp = now()

    _replace(ActivityTask, "start", start_activity_task)

    # Timers fire under the lock, and never after a cancel or the execution's close.
    fire_timer = _moto(WorkflowExecution, "_fire_timer")

    def locked_fire_timer(self, started_event_id, timer_id):
        with emulator.lock:
            timer = self._timers.get(timer_id)
            if timer is None or timer.started_event_id != started_event_id:
                return  # cancelled while it waited for the lock
            if not self.open:
                self._timers.pop(timer_id)
                return
            fire_timer(self, started_event_id, timer_id)

    _replace(WorkflowExecution, "_fire_timer", locked_fire_timer)

    # 6. Saved without its lock and timer threads; timers re-armed once all is loaded.
    def getstate(self):
        state = self.__dict__.copy()
        state.pop("threading_lock", None)
        state["_timers"] = {
            timer_id: (timer.started_event_id, timer.background_timer.due)
            for timer_id, timer in self._timers.items()
            if timer.is_alive()
        }
        return state

    def setstate(self, state):
        timers = state.pop("_timers", {})
        self.__dict__.update(state)
        self.threading_lock = threading.Lock()
        self._timers = {}
        if _rearm is not None:
            _rearm.extend((self, timer_id, started, due) for timer_id, (started, due) in timers.items())

    _replace(WorkflowExecution, "__getstate__", getstate, must_exist=False)
    _replace(WorkflowExecution, "__setstate__", setstate, must_exist=False)
