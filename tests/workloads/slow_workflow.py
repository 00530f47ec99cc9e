"""A workflow that schedules one WaitForRelease activity and completes with its result."""

from caravand import Workflow


class SlowOne(Workflow):
    name = "SlowOne"
    version = "1.0"
    default_task_list = "slow-decisions"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "30"
    default_child_policy = "TERMINATE"

    def run(self):
        work = self.task.activities.get("work")
        if work is None:
            self.task.schedule_activity("work", "WaitForRelease", "1.0", self.task.input, task_list="slow")
        elif work.status == "completed":
            self.task.complete(work.result)
        elif work.closed:
            self.task.fail("work " + work.status, work.reason or "-")
