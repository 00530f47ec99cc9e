"""The baseline of the throughput benchmark: a bare boto3 poll/respond loop, no framework.

``python bench/bare_loop.py decider|activity URL POLL_HOLD``: one process,
one poller, forever (the benchmark SIGKILLs it by PID). It serves the same
BenchFlow workflow and BenchEcho activity as caravand's pools (the types
of bench_types), with the least code that is still correct on SWF: a poll
held up to POLL_HOLD seconds, a history read to its last page, a stale task
(answered already, or timed out) skipped. No heartbeat, metrics, retries on
a respond, logging or supervision: that is what caravand adds, and what the
comparison prices.
"""

import os
import sys

import boto3
import botocore.config
import botocore.exceptions
from bench_types import ACTIVITY, ACTIVITY_ID, ACTIVITY_TASK_LIST, DECISION_TASK_LIST, DOMAIN, echo


def decide(events: list[dict]) -> list[dict]:
    """BenchFlow's logic: schedule the activity once, complete the workflow with its result."""
    completed = [e for e in events if e["eventType"] == "ActivityTaskCompleted"]
    if completed:
        result = completed[-1]["activityTaskCompletedEventAttributes"].get("result")
        return [{"decisionType": "CompleteWorkflowExecution", "completeWorkflowExecutionDecisionAttributes": {"result": result}}]  # fmt: skip
    if any(e["eventType"] == "ActivityTaskScheduled" for e in events):
        return []  # the activity runs: nothing to decide yet
    started = events[0]["workflowExecutionStartedEventAttributes"]
    attributes = {
        "activityType": {"name": ACTIVITY["name"], "version": ACTIVITY["version"]},
        "activityId": ACTIVITY_ID,
        "taskList": {"name": ACTIVITY_TASK_LIST},
    }
    if "input" in started:
        attributes["input"] = started["input"]
    return [{"decisionType": "ScheduleActivityTask", "scheduleActivityTaskDecisionAttributes": attributes}]


def serve_decisions(client, identity: str) -> None:
    while True:
        task = client.poll_for_decision_task(domain=DOMAIN, taskList={"name": DECISION_TASK_LIST}, identity=identity)
        if not task.get("taskToken"):
            continue  # an empty poll, held as long as the endpoint holds one
        events = task["events"]
        page = task
        while page.get("nextPageToken"):
            page = client.poll_for_decision_task(
                domain=DOMAIN, taskList={"name": DECISION_TASK_LIST}, identity=identity, nextPageToken=page["nextPageToken"]
            )  # fmt: skip
            events += page["events"]
        try:
            client.respond_decision_task_completed(taskToken=task["taskToken"], decisions=decide(events))
        except client.exceptions.UnknownResourceFault:
            pass  # a stale task: answered already, or timed out


def serve_activities(client, identity: str) -> None:
    while True:
        task = client.poll_for_activity_task(domain=DOMAIN, taskList={"name": ACTIVITY_TASK_LIST}, identity=identity)
        if not task.get("taskToken"):
            continue
        try:
            client.respond_activity_task_completed(taskToken=task["taskToken"], result=echo(task.get("input", "")))
        except client.exceptions.UnknownResourceFault:
            pass


def main(argv: list[str]) -> int:
    role, url, hold = argv
    # A held poll must not be cut by the read timeout: the hold and a margin, as caravand does.
    config = botocore.config.Config(read_timeout=float(hold) + 10, retries={"mode": "standard", "max_attempts": 3})
    client = boto3.Session().client("swf", endpoint_url=url, config=config)
    identity = f"bare-{role}-{os.getpid()}"
    print("ready", flush=True)
    (serve_decisions if role == "decider" else serve_activities)(client, identity)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (KeyboardInterrupt, botocore.exceptions.BotoCoreError):
        sys.exit(1)
