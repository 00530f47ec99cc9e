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
7. **Lists, counts and cancels.** moto ignores ``executionFilter``,
   ``typeFilter`` and the time filters, deletes from the list it iterates
   for the tag and close-status filters (and compares a dict to a string
   for the latter), answers ``reverseOrder=true`` with HTTP 500, pages
   nothing, and has no Count*WorkflowExecutions. Here every filter holds, in
   SWF's orders, and ListDomains, List*Types, List*WorkflowExecutions and
   GetWorkflowExecutionHistory page (``maximumPageSize``, default 1000; an
   opaque ``nextPageToken``). moto records ``TimerCancelled`` (SWF:
   ``TimerCanceled``), and has no RequestCancelWorkflowExecution,
   RequestCancelActivityTask decision, RespondActivityTaskCanceled,
   ``cancelRequested`` heartbeat answer, nor Delete*Type: here they are.

Everything is patched in this process only, by :func:`install`, and undone
by :func:`uninstall` (the unit tests share their process with in-process
moto). The patches are written against moto :data:`MOTO_VERSION`:
:func:`install` fails loudly if a function it patches is missing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
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
        "RequestCancelActivityTask",
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


# -- 7. lists, counts and cancels

#: SWF's largest page, and the size of one that does not say (maximumPageSize 0 or absent).
MAX_PAGE_SIZE = 1000
CLOSE_STATUSES = ("COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW", "TIMED_OUT")
#: The history events moto lacks, which these patches record.
NEW_EVENT_TYPES = (
    "TimerCanceled",
    "WorkflowExecutionCancelRequested",
    "ActivityTaskCancelRequested",
    "ActivityTaskCanceled",
    "RequestCancelActivityTaskFailed",
)


def invalid(message: str) -> Exception:
    from moto.swf.exceptions import SWFValidationException

    return SWFValidationException(message)


def encode_token(action: str, key: tuple) -> str:
    """An opaque nextPageToken: the action it pages and the sort key of the page's last item."""
    return base64.urlsafe_b64encode(json.dumps([action, *key]).encode()).decode()


def decode_token(action: str, token: Any) -> tuple:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(str(token).encode()))
    except (ValueError, binascii.Error):
        decoded = None
    if not isinstance(decoded, list) or not decoded or decoded[0] != action:
        raise invalid(f"Invalid nextPageToken for {action}")
    return tuple(decoded[1:])


def page(action: str, params: dict, items, key: Callable[[Any], tuple], *, descending: bool = False):
    """One page of ``items`` in SWF's order (``reverseOrder`` reverses it): (the page, its nextPageToken or None).

    The token names the last item's sort key, not an offset: an item added
    meanwhile neither repeats one already seen nor hides one still to come.
    """
    size = params.get("maximumPageSize") or MAX_PAGE_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_PAGE_SIZE:
        raise invalid(
            f"1 validation error detected: Value '{size}' at 'maximumPageSize' failed to satisfy constraint: "
            f"Member must have value less than or equal to {MAX_PAGE_SIZE}"
        )
    descending = descending != bool(params.get("reverseOrder"))
    ordered = sorted(items, key=key, reverse=descending)
    if params.get("nextPageToken"):
        after = decode_token(action, params["nextPageToken"])
        ordered = [item for item in ordered if (key(item) < after if descending else key(item) > after)]
    chunk = ordered[:size]
    return chunk, (encode_token(action, key(chunk[-1])) if len(ordered) > size else None)


def with_token(answer: dict, token: str | None) -> str:
    if token:
        answer["nextPageToken"] = token
    return json.dumps(answer)


def executions_asked(backend, params: dict, *, closed: bool) -> tuple[list, str]:
    """The executions of the domain that match ``params``' filters, and the time they sort by ("start"/"close").

    SWF: a start time filter (open; closed: it or a close time filter, not
    both) and at most one of executionFilter, typeFilter, tagFilter and
    (closed) closeStatusFilter.
    """
    if not isinstance(params.get("domain"), str):
        raise invalid("1 validation error detected: Value null at 'domain' failed to satisfy constraint: "
                      "Member must not be null")  # fmt: skip
    times = [name for name in ("startTimeFilter", "closeTimeFilter") if params.get(name) is not None]
    if not closed and params.get("closeTimeFilter") is not None:
        raise invalid("closeTimeFilter is not a parameter of an open executions' list")
    if not times:
        raise invalid("1 validation error detected: Value null at 'startTimeFilter' failed to satisfy constraint: "
                      "Member must not be null")  # fmt: skip
    if len(times) > 1:
        raise invalid("Cannot specify both a startTimeFilter and a closeTimeFilter")
    exclusive = ["executionFilter", "typeFilter", "tagFilter", *(["closeStatusFilter"] if closed else [])]
    given = [name for name in exclusive if params.get(name) is not None]
    if len(given) > 1:
        raise invalid(f"Cannot specify more than one exclusive filters in the same query: {given}")
    window = params[times[0]]
    oldest, latest = window.get("oldestDate"), window.get("latestDate")
    if not isinstance(oldest, (int, float)) or not isinstance(latest, (int, float, type(None))):
        raise invalid(f"{times[0]}: oldestDate (and latestDate) must be timestamps")
    status = (params.get("closeStatusFilter") or {}).get("status")
    if closed and params.get("closeStatusFilter") is not None and status not in CLOSE_STATUSES:
        raise invalid(
            f"closeStatusFilter.status {status!r}: Member must satisfy enum value set: {list(CLOSE_STATUSES)}"
        )
    by = "close" if times[0] == "closeTimeFilter" else "start"
    matching = []
    for execution in backend._get_domain(params["domain"]).workflow_executions:
        stamp = execution.close_timestamp if by == "close" else execution.start_timestamp
        if execution.open == closed or stamp is None or stamp < oldest or (latest is not None and stamp > latest):
            continue
        if not execution_matches(execution, params):
            continue
        matching.append(execution)
    return matching, by


def execution_matches(execution, params: dict) -> bool:
    """``execution`` passes the exclusive filter ``params`` has, if any."""
    if params.get("executionFilter") is not None:
        return execution.workflow_id == params["executionFilter"].get("workflowId")
    if params.get("typeFilter") is not None:
        wanted = params["typeFilter"]
        return execution.workflow_type.name == wanted.get("name") and (
            wanted.get("version") is None or execution.workflow_type.version == wanted["version"]
        )
    if params.get("tagFilter") is not None:
        return params["tagFilter"].get("tag") in (execution.tag_list or ())
    if params.get("closeStatusFilter") is not None:
        return execution.close_status == params["closeStatusFilter"].get("status")
    return True


def execution_key(by: str) -> Callable[[Any], tuple]:
    return lambda e: ((e.close_timestamp if by == "close" else e.start_timestamp) or 0.0, e.run_id)


def request_cancel_activity(execution, event_id: int, attributes: dict) -> None:
    """The RequestCancelActivityTask decision, as SWF carries it out.

    ActivityTaskCancelRequested; a task still only scheduled is canceled at
    once (ActivityTaskCanceled, and a decision task); a started one learns
    it from its next heartbeat's ``cancelRequested``. An activity id with no
    open task: RequestCancelActivityTaskFailed ACTIVITY_ID_UNKNOWN.
    """
    activity_id = attributes.get("activityId")
    task = next((t for t in execution.activity_tasks if t.activity_id == activity_id and is_open(t)), None)
    if task is None:
        execution._add_event("RequestCancelActivityTaskFailed", activity_id=activity_id, cause="ACTIVITY_ID_UNKNOWN",
                             decision_task_completed_event_id=event_id)  # fmt: skip
        execution.should_schedule_decision_next = True
        return
    requested = execution._add_event(
        "ActivityTaskCancelRequested", activity_id=activity_id, decision_task_completed_event_id=event_id
    )
    task.cancel_requested_event_id = requested.event_id
    if task.state == "SCHEDULED":
        cancel_activity_task(task, None)
        execution.should_schedule_decision_next = True


def cancel_activity_task(task, details) -> None:
    """Close ``task`` as canceled (ActivityTaskCanceled); the caller schedules the decision task."""
    execution = task.workflow_execution
    execution._add_event(
        "ActivityTaskCanceled",
        scheduled_event_id=task.scheduled_event_id,
        started_event_id=task.started_event_id,
        details=details,
        latest_cancel_requested_event_id=getattr(task, "cancel_requested_event_id", None),
    )
    task.state = "CANCELED"
    execution.open_counts["openActivityTasks"] -= 1


def type_not_deprecated(_type) -> Exception:
    from moto.swf.exceptions import SWFClientError

    class SWFTypeNotDeprecatedFault(SWFClientError):
        pass

    return SWFTypeNotDeprecatedFault(
        "com.amazonaws.swf.base.model#TypeNotDeprecatedFault",
        f"{type(_type).__name__}=[name={_type.name}, version={_type.version}]",
    )


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
    _patch_lists_and_cancels()


def _patch_lists_and_cancels() -> None:
    """7. Lists, counts and cancels (every response below runs under the lock: see serialized_call_action)."""
    from moto.swf.models import SWFBackend, WorkflowExecution
    from moto.swf.models import history_event as history_event_module
    from moto.swf.responses import SWFResponse
    from moto.swf.utils import decapitalize

    # The lists: moto ignores executionFilter, typeFilter and the time filters,
    # deletes from the list it iterates (tag, close status: one of two matching
    # executions kept), compares closeStatusFilter (a dict) to a string, slices
    # a reversed() (reverseOrder=true: HTTP 500), and pages nothing.
    def list_executions(self, *, closed: bool) -> str:
        params = self._params
        action = "ListClosedWorkflowExecutions" if closed else "ListOpenWorkflowExecutions"
        matching, by = executions_asked(self.swf_backend, params, closed=closed)
        # SWF: newest first, by start time (or close time, when that is the filter).
        chunk, token = page(action, params, matching, execution_key(by), descending=True)
        return with_token({"executionInfos": [e.to_list_dict() for e in chunk]}, token)

    _replace(SWFResponse, "list_open_workflow_executions", lambda self: list_executions(self, closed=False))
    _replace(SWFResponse, "list_closed_workflow_executions", lambda self: list_executions(self, closed=True))

    # moto has no Count*WorkflowExecutions: the same filters, counted (never truncated here).
    def count_executions(self, *, closed: bool) -> str:
        matching, _ = executions_asked(self.swf_backend, self._params, closed=closed)
        return json.dumps({"count": len(matching), "truncated": False})

    _replace(SWFResponse, "count_open_workflow_executions", lambda self: count_executions(self, closed=False),
             must_exist=False)  # fmt: skip
    _replace(SWFResponse, "count_closed_workflow_executions", lambda self: count_executions(self, closed=True),
             must_exist=False)  # fmt: skip

    def list_domains(self) -> str:
        params = self._params
        domains = [d for d in self.swf_backend.domains if d.status == params.get("registrationStatus")]
        chunk, token = page("ListDomains", params, domains, lambda d: (d.name,))
        return with_token({"domainInfos": [d.to_short_dict() for d in chunk]}, token)

    _replace(SWFResponse, "list_domains", list_domains)

    def list_types(self, kind: str) -> str:
        params = self._params
        domain = self.swf_backend._get_domain(params.get("domain"))
        types = [t for t in domain.find_types(kind, params.get("registrationStatus"))
                 if params.get("name") is None or t.name == params["name"]]  # fmt: skip
        chunk, token = page(f"List{kind.capitalize()}Types", params, types, lambda t: (t.name, t.version))
        return with_token({"typeInfos": [t.to_medium_dict() for t in chunk]}, token)

    _replace(SWFResponse, "_list_types", list_types)

    def get_workflow_execution_history(self) -> str:
        domain_name, run_id, workflow_id = self._get_workflow_execution_params()
        execution = self.swf_backend.describe_workflow_execution(domain_name, run_id, workflow_id)
        params = self._params
        chunk, token = page("GetWorkflowExecutionHistory", params, execution._events, lambda e: (e.event_id,))
        return with_token({"events": [event.to_dict() for event in chunk]}, token)

    _replace(SWFResponse, "get_workflow_execution_history", get_workflow_execution_history)

    # The events moto cannot record (HistoryEvent refuses a type it does not list).
    _replace(history_event_module, "SUPPORTED_HISTORY_EVENT_TYPES",
             (*_moto(history_event_module, "SUPPORTED_HISTORY_EVENT_TYPES"), *NEW_EVENT_TYPES))  # fmt: skip

    # SWF's event is TimerCanceled (moto: TimerCancelled); CancelTimerFailed names its timer.
    def cancel_timer(self, event_id, timer_id):
        timer = self._timers.get(timer_id)
        if timer is None or not timer.is_alive():
            self._add_event("CancelTimerFailed", cause="TIMER_ID_UNKNOWN", decision_task_completed_event_id=event_id,
                            timer_id=timer_id)  # fmt: skip
            return
        timer.cancel()
        self._timers.pop(timer_id)
        self._add_event("TimerCanceled", decision_task_completed_event_id=event_id,
                        started_event_id=timer.started_event_id, timer_id=timer_id)  # fmt: skip

    _replace(WorkflowExecution, "cancel_timer", cancel_timer)

    # moto's decisions, and RequestCancelActivityTask (moto: NotImplementedError
    # after the task was completed, the execution stuck).
    carry_out = {
        "CompleteWorkflowExecution": lambda e, i, a: e.complete(i, a.get("result")),
        "FailWorkflowExecution": lambda e, i, a: e.fail(i, a.get("details"), a.get("reason")),
        "ScheduleActivityTask": lambda e, i, a: e.schedule_activity_task(i, a),
        "RecordMarker": lambda e, i, a: e.record_marker(i, a),
        "StartTimer": lambda e, i, a: e.start_timer(i, a),
        "CancelTimer": lambda e, i, a: e.cancel_timer(i, a["timerId"]),
        "CancelWorkflowExecution": lambda e, i, a: e.cancel(i, a.get("details")),
        "RequestCancelActivityTask": request_cancel_activity,
    }
    assert set(carry_out) == HANDLED_DECISIONS
    _moto(WorkflowExecution, "handle_decisions")

    def handle_decisions(self, event_id, decisions):
        for decision in decisions:
            kind = decision["decisionType"]
            carry_out[kind](self, event_id, decision.get(f"{decapitalize(kind)}DecisionAttributes", {}))
        self.open_counts["openDecisionTasks"] -= 1

    _replace(WorkflowExecution, "handle_decisions", handle_decisions)

    # A CancelWorkflowExecution decision fails (UNHANDLED_DECISION) when events came
    # while its task was in hand, as SWF does: moto looks only at its scheduled
    # tasks, and here a decision task waits unscheduled for the started one.
    cancel = _moto(WorkflowExecution, "cancel")

    def cancel_unless_unhandled(self, event_id, details=None):
        if getattr(self, "caravand_decision_pending", False):
            self._add_event("CancelWorkflowExecutionFailed", decision_task_completed_event_id=event_id,
                            cause="UNHANDLED_DECISION")  # fmt: skip
            return
        cancel(self, event_id, details)

    _replace(WorkflowExecution, "cancel", cancel_unless_unhandled)

    # A terminated execution has a close time (moto: none; listed by close time, purged by it).
    terminate = _moto(WorkflowExecution, "terminate")

    def terminate_with_time(self, *args, **kwargs):
        terminate(self, *args, **kwargs)
        self.close_timestamp = self.close_timestamp or now()

    _replace(WorkflowExecution, "terminate", terminate_with_time)

    # RequestCancelWorkflowExecution (moto: none): WorkflowExecutionCancelRequested, and a decision task.
    def request_cancel_workflow_execution(self) -> str:
        params = self._params
        domain = self.swf_backend._get_domain(params.get("domain"))
        execution = domain.get_workflow_execution(params.get("workflowId"), run_id=params.get("runId"),
                                                  raise_if_closed=True)  # fmt: skip
        if execution is None:  # closed: get_workflow_execution raises for an unknown one only
            from moto.swf.exceptions import SWFUnknownResourceFault

            raise SWFUnknownResourceFault("execution", f"workflowId = {params.get('workflowId')}")
        execution.cancel_requested = True
        execution._add_event("WorkflowExecutionCancelRequested")
        execution.schedule_decision_task()
        return ""

    _replace(SWFResponse, "request_cancel_workflow_execution", request_cancel_workflow_execution, must_exist=False)

    # RespondActivityTaskCanceled (moto: none).
    def respond_activity_task_canceled(self) -> str:
        task = self.swf_backend._find_activity_task_from_token(self._params.get("taskToken"))
        cancel_activity_task(task, self._params.get("details"))
        task.workflow_execution.schedule_decision_task()
        return ""

    _replace(SWFResponse, "respond_activity_task_canceled", respond_activity_task_canceled, must_exist=False)

    # A heartbeat's answer says whether the decider asked to cancel the task (moto: always false).
    heartbeat = _moto(SWFBackend, "record_activity_task_heartbeat")

    def record_activity_task_heartbeat(self) -> str:
        token = self._params.get("taskToken")
        heartbeat(self.swf_backend, token, details=self._params.get("details"))
        task = self.swf_backend._find_activity_task_from_token(token)
        return json.dumps({"cancelRequested": getattr(task, "cancel_requested_event_id", None) is not None})

    _replace(SWFResponse, "record_activity_task_heartbeat", record_activity_task_heartbeat)

    # DeleteActivityType / DeleteWorkflowType (moto: none): of a deprecated type only, as SWF.
    def delete_type(self, kind: str) -> str:
        params = self._params
        domain = self.swf_backend._get_domain(params.get("domain"))
        named = params.get(f"{kind}Type") or {}
        _type = domain.get_type(kind, named.get("name"), named.get("version"))
        if _type.status != "DEPRECATED":
            raise type_not_deprecated(_type)
        del domain.types[kind][_type.name][_type.version]
        return ""

    _replace(SWFResponse, "delete_activity_type", lambda self: delete_type(self, "activity"), must_exist=False)
    _replace(SWFResponse, "delete_workflow_type", lambda self: delete_type(self, "workflow"), must_exist=False)
