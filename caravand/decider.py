"""The decision task poll loop: read the whole history, run the Workflow, answer.

Dispatch is by (workflow type name, version). An exception in ``run()`` or
a task of a type this decider does not serve is logged and counted, and the
decision task is left to time out, so that SWF schedules it again (perhaps
on a decider that has the fix); with ``on_error = "fail"`` the execution is
failed instead. ``WorkflowFailure`` always fails the execution.

Retrying is bounded: an error in ``run()`` fails the execution after
``max_decision_retries`` decision tasks in a row timed out, and at once when
the decision task has no timeout (``NONE``: left alone, it would never be
retried), so that a bug does not burn a task timeout and three events per
try until the execution's timeout or SWF's 25,000-event limit.
"""

from __future__ import annotations

import logging
import time
import traceback

from caravand import registration, swf
from caravand.loader import load_classes
from caravand.poller import Backoff, Poller
from caravand.swf import ConfigError
from caravand.values import is_none, timeout_seconds
from caravand.workflow import DecisionDone, DecisionTask, Workflow, WorkflowFailure

log = logging.getLogger(__name__)

#: What an error in run() or a task of a type not served does: leave the task to time out, or fail the execution.
ON_ERROR = ("retry", "fail")
#: A page of history that fails this many times abandons the task to its timeout.
PAGE_ATTEMPTS = 5
#: The pause between two attempts at a page grows to at most this many seconds.
PAGE_BACKOFF_CAP = 5.0
#: botocore's standard mode pauses up to 1 s, then 2 s... between its own attempts.
BOTOCORE_PAUSES = 2 ** (swf.CALL_MAX_ATTEMPTS - 1) - 1
#: The longest one attempt at a page may take, the pause after it included:
#: botocore's attempts (a connect and a read timeout each), its pauses, ours,
#: and a margin (a retry-after header, a busy machine). Each attempt announces
#: a deadline this far ahead (``Hooks.paging_started``).
PAGE_ATTEMPT_BUDGET = (
    swf.CALL_MAX_ATTEMPTS * (swf.CONNECT_TIMEOUT + swf.CALL_READ_TIMEOUT) + BOTOCORE_PAUSES + PAGE_BACKOFF_CAP + 5.0
)
#: Decision tasks that may time out in a row before an error fails the execution.
MAX_DECISION_RETRIES = 5
#: Marks the data of a task whose history could not be read (see ``poll_once``).
_ABANDONED = "caravand:abandoned"


def check_on_error(on_error: str) -> str:
    """``on_error`` as it is if it is one of ON_ERROR, else ConfigError naming the value and the choices.

    The one check of the setting: the pool factory (at load) and the Decider both call it.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error = {on_error!r}: expected one of {', '.join(ON_ERROR)}")
    return on_error


class Decider(Poller):
    """Polls one decision task list and runs the matching Workflow class."""

    kind = "decider"

    def __init__(
        self,
        endpoint,
        domain,
        task_list,
        workflows,
        *,
        on_error: str = "retry",
        max_decision_retries: int = MAX_DECISION_RETRIES,
        **kwargs,
    ):
        super().__init__(endpoint, domain, task_list, **kwargs)
        self.on_error = check_on_error(on_error)
        if max_decision_retries < 0:
            raise ValueError(f"max_decision_retries must be 0 or more, not {max_decision_retries!r}")
        self.max_decision_retries = max_decision_retries
        self.workflows: dict[tuple[str, str], type[Workflow]] = (
            dict(workflows) if isinstance(workflows, dict) else {(w.name, w.version): w for w in workflows}
        )
        if on_error == "retry":
            refuse_untimed(self.workflows.values())

    @classmethod
    def from_modules(cls, endpoint, domain, task_list, modules, **kwargs) -> Decider:
        return cls(endpoint, domain, task_list, load_classes(modules, Workflow), **kwargs)

    def register_types(self) -> None:
        registration.register_types(self.client, self.domain, "workflow", self.workflows.values())

    # -- polling

    def poll_once(self) -> dict | None:
        data = self.long_poll("poll_for_decision_task")
        if not data.get("taskToken"):
            return None
        data["events"] = list(data.get("events", []))
        token = data.get("nextPageToken")
        while token:
            page = self._next_page(token)
            if page is None:
                log.error(
                    "abandoned: decision task of %s (history unreadable; SWF retries it after its timeout)",
                    data["workflowExecution"]["workflowId"],
                )
                # Still a task received: handle() reports it as "abandoned"
                # (to the hooks and the stats), not as an empty poll.
                data[_ABANDONED] = True
                return data
            data["events"].extend(page.get("events", []))
            token = page.get("nextPageToken")
        return data

    def _next_page(self, token: str) -> dict | None:
        """One more page of the task's history, retried; None if it cannot be read.

        Each attempt announces its own deadline: the poll's no longer bounds
        the paging of a task that came at the end of a held poll.
        """
        backoff = Backoff(base=0.2, cap=PAGE_BACKOFF_CAP, rng=self.rng)
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            self.hooks.paging_started(self, self.clock() + PAGE_ATTEMPT_BUDGET)
            try:
                # Unlike the first call, a call with a page token answers at once:
                # the ordinary client's timeouts and retries fit it, not the poll's.
                return swf.call(
                    self.client,
                    "poll_for_decision_task",
                    domain=self.domain,
                    taskList={"name": self.task_list},
                    identity=self.identity,
                    nextPageToken=token,
                )
            except swf.CaravanError as exc:
                delay = backoff.next_delay()
                log.warning("history page failed (attempt %d/%d): %s", attempt, PAGE_ATTEMPTS, exc)
                if attempt < PAGE_ATTEMPTS:
                    self._sleep(delay)
        return None

    # -- deciding

    def task_deadline(self, task: DecisionTask, now: float) -> float | None:
        """When this decision task times out, from its DecisionTaskScheduled event."""
        timeout = timeout_seconds(task.task_timeout)
        return None if timeout is None else now + timeout

    def handle(self, data: dict) -> None:
        task = DecisionTask(data)
        started = self.clock()
        if data.get(_ABANDONED):
            # Never run a workflow on a partial history; leave the task to its timeout.
            self.hooks.task_started(self, task, None)
            self.finish(task, "abandoned", started)
            return
        deadline = self.task_deadline(task, started)
        self.hooks.task_started(self, task, deadline)
        outcome = self.decide(task, deadline)
        self.finish(task, outcome, started)

    def decide(self, task: DecisionTask, deadline: float | None = None) -> str:
        """Run the workflow for ``task`` and answer (until ``deadline``); returns the outcome."""
        workflow_class = self.workflows.get((task.workflow_type, task.workflow_version))
        if workflow_class is None:
            served = ", ".join(f"{n} {v}" for n, v in sorted(self.workflows)) or "none"
            log.error("unknown workflow type: %r (this decider serves: %s)", task, served)
            if self.on_error != "fail":
                return "unknown-type"
            task.decisions = []
            task.fail_now("unknown-workflow-type", f"no decider for {task.workflow_type} {task.workflow_version}")
            return self.respond_decisions(task, "workflow-failed", deadline)

        log.info("deciding: %r", task)
        started = time.monotonic()
        outcome = "completed"
        try:
            workflow_class(task).run()
        except DecisionDone as done:
            log.debug("%s", done)
        except WorkflowFailure as failure:
            log.info("failing workflow: %r (%s)", task, failure.reason)
            task.fail_now(failure.reason, failure.details)
            outcome = "workflow-failed"
        except Exception as exc:
            log.exception("workflow error: %r in %s.run()", task, workflow_class.__name__)
            reason = self.error_reason(task, exc)
            if reason is None:
                return "error"
            task.decisions = []
            task.fail_now(reason, traceback.format_exc())
            outcome = "workflow-failed"
        log.debug("decided in %.3f s: %r -> %s", time.monotonic() - started, task, task.decisions)
        return self.respond_decisions(task, outcome, deadline)

    def error_reason(self, task: DecisionTask, exc: Exception) -> str | None:
        """The reason to fail the execution after an error in ``run()``, or None to leave the task to time out."""
        error = f"{type(exc).__name__}: {exc}"
        if self.on_error == "fail":
            return error
        if is_none(task.task_timeout):
            # SWF would never time this task out, so never schedule it again.
            log.error("failing workflow: %r (its decision task has no timeout: cannot retry)", task)
            return f"decision task timeout NONE, cannot retry: {error}"
        timeouts = task.decision_timeouts
        if timeouts >= self.max_decision_retries:
            log.error("failing workflow: %r (decision retries exhausted: %d timed out in a row)", task, timeouts)
            return f"decision retries exhausted ({timeouts} timed out): {error}"
        log.warning(
            "leaving task: %r (to time out, SWF retries it: %d of %d retries used)",
            task,
            timeouts,
            self.max_decision_retries,
        )
        return None

    def respond_decisions(self, task: DecisionTask, outcome: str, deadline: float | None = None) -> str:
        """Send ``task.decisions``, retried until ``deadline`` (the decision task's timeout) if SWF is busy.

        Decisions SWF refuses outright (a request over 1 MB, a field over its
        limit, a malformed decision) would be built the same way on every
        retry, looping to the 25,000-event limit: once ``on_error`` allows
        it (``fail``, or ``retry`` with max_decision_retries used up), the
        execution is failed with the refusal instead.
        """
        answered = self.respond(
            task,
            "respond_decision_task_completed",
            outcome,
            deadline=deadline,
            decisions=task.decisions,
            executionContext=task.execution_context,
        )
        refusal = self.refusal
        if answered != "respond-failed" or refusal is None or task.decisions_are_failure():
            return answered
        if self.on_error != "fail" and task.decision_timeouts < self.max_decision_retries:
            log.error("leaving task: %r (decisions refused; %d of %d retries used)", task, task.decision_timeouts,
                      self.max_decision_retries)  # fmt: skip
            return answered
        task.decisions = []
        task.fail_now("decisions refused by SWF", str(refusal))
        log.error("failing workflow: %r (its decisions were refused: %s)", task, refusal)
        return self.respond(
            task, "respond_decision_task_completed", "workflow-failed", deadline=deadline, decisions=task.decisions
        )


def refuse_untimed(workflows) -> None:
    """ConfigError if a workflow type's decision tasks never time out: ``on_error = retry`` cannot retry them."""
    for workflow in workflows:
        if is_none(workflow.default_task_start_to_close_timeout):
            raise ConfigError(
                f"on_error = retry: workflow {workflow.name} {workflow.version} ({workflow.__qualname__}) has "
                f"default_task_start_to_close_timeout = NONE, so a task left after an error would never be "
                f"retried: give it a timeout, or use on_error = fail"
            )
