"""``Stalled`` runs the ``Stall`` activity until one attempt passes: a worker killed with its task in hand costs a retry.

Its input, JSON, says whether the first attempt stalls (``{"stall": true}``):
the e2e tests kill the worker that holds it, and the endpoint times it out
after its start-to-close timeout (START_TO_CLOSE), which schedules a
decision, which schedules the next attempt. The activity lives in
stall_activities; this module only names it.
"""

import json

from caravand import Workflow

MAX_ATTEMPTS = 5
TASK_LIST = "stall-work"


class Stalled(Workflow):
    name = "Stalled"
    version = "1.0"
    default_task_list = "stall"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_child_policy = "TERMINATE"

    def run(self):
        attempts = sorted(self.task.activities.values(), key=lambda a: a.scheduled_event_id)
        latest = attempts[-1] if attempts else None
        if latest is not None and latest.status == "completed":
            self.task.complete(latest.result)
            return
        if latest is not None and not latest.closed:
            self.task.decision_done(msg=f"waiting for {latest.id}")
        if len(attempts) >= MAX_ATTEMPTS:
            self.task.fail(f"Stall failed {len(attempts)} times", latest.status if latest else "-")
        stall = json.loads(self.task.input or "{}").get("stall", False)
        attempt = len(attempts) + 1
        self.task.schedule_activity(
            f"stall#{attempt}", "Stall", "1.0", json.dumps({"attempt": attempt, "stall": stall}), task_list=TASK_LIST
        )
