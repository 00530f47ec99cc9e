"""caravand's side of the throughput benchmark: the decider of BenchFlow (see bench_types)."""

from bench_types import ACTIVITY, ACTIVITY_ID, ACTIVITY_TASK_LIST, WORKFLOW

from caravand import Workflow


class BenchFlow(Workflow):
    """Schedule one BenchEcho activity; complete with its result."""

    name = WORKFLOW["name"]
    version = WORKFLOW["version"]
    default_task_list = WORKFLOW["defaultTaskList"]["name"]
    default_execution_start_to_close_timeout = WORKFLOW["defaultExecutionStartToCloseTimeout"]
    default_task_start_to_close_timeout = WORKFLOW["defaultTaskStartToCloseTimeout"]
    default_child_policy = WORKFLOW["defaultChildPolicy"]

    def run(self):
        echo = self.task.activities.get(ACTIVITY_ID)
        if echo is None:
            self.task.schedule_activity(
                ACTIVITY_ID, ACTIVITY["name"], ACTIVITY["version"], self.task.input, task_list=ACTIVITY_TASK_LIST
            )
        elif echo.status == "completed":
            self.task.complete(echo.result)
        elif echo.closed:
            self.task.fail(f"{ACTIVITY_ID} {echo.status}", echo.reason or "-")
