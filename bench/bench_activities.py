"""caravand's side of the throughput benchmark: the BenchEcho activity (see bench_types)."""

from bench_types import ACTIVITY, echo

from caravand import Activity


class BenchEcho(Activity):
    """Answer ``echo: INPUT`` at once."""

    name = ACTIVITY["name"]
    version = ACTIVITY["version"]
    default_task_list = ACTIVITY["defaultTaskList"]["name"]
    default_task_schedule_to_start_timeout = ACTIVITY["defaultTaskScheduleToStartTimeout"]
    default_task_start_to_close_timeout = ACTIVITY["defaultTaskStartToCloseTimeout"]
    default_task_schedule_to_close_timeout = ACTIVITY["defaultTaskScheduleToCloseTimeout"]
    default_task_heartbeat_timeout = ACTIVITY["defaultTaskHeartbeatTimeout"]

    def run(self):
        return echo(self.task.input)
