"""The one workflow type and one activity type that both throughput runs use: names, task lists, timeouts.

Plain constants, no framework: the bare boto3 loop imports them as well as
caravand's Workflow and Activity classes, so both register and run the
very same types.
"""

DOMAIN = "caravand-bench"
DECISION_TASK_LIST = "bench-decisions"
ACTIVITY_TASK_LIST = "bench-activities"

WORKFLOW = {
    "name": "BenchFlow",
    "version": "1.0",
    "defaultTaskList": {"name": DECISION_TASK_LIST},
    "defaultExecutionStartToCloseTimeout": "600",
    "defaultTaskStartToCloseTimeout": "30",
    "defaultChildPolicy": "TERMINATE",
}
ACTIVITY = {
    "name": "BenchEcho",
    "version": "1.0",
    "defaultTaskList": {"name": ACTIVITY_TASK_LIST},
    "defaultTaskScheduleToStartTimeout": "300",
    "defaultTaskStartToCloseTimeout": "30",
    "defaultTaskScheduleToCloseTimeout": "330",
    "defaultTaskHeartbeatTimeout": "NONE",
}
#: The id of the workflow's one activity.
ACTIVITY_ID = "echo"


def echo(value: str) -> str:
    """The activity's work: the same string in both runs, so both answer the same bytes."""
    return f"echo: {value}"


def register(client) -> None:
    """Register the domain and both types on a fresh endpoint (the benchmark does it, for both runs)."""
    client.register_domain(name=DOMAIN, workflowExecutionRetentionPeriodInDays="1")
    client.register_workflow_type(domain=DOMAIN, **WORKFLOW)
    client.register_activity_type(domain=DOMAIN, **ACTIVITY)
