"""The reliability suite's workflow: ``Relay`` runs the ``Leg`` activity twice, each retried until it passes.

Greeting-like: each leg is retried on any failure or timeout (up to
MAX_ATTEMPTS), so that a child killed with its task in hand costs a retry,
never the workflow. The activity lives in relay_activities; this module
only names it.
"""

import json

from caravand import Workflow

MAX_ATTEMPTS = 30
LEGS = ("out", "back")
TASK_LIST = "relay-legs"


class Relay(Workflow):
    name = "Relay"
    version = "1.0"
    default_task_list = "relay"
    default_execution_start_to_close_timeout = "1800"
    default_task_start_to_close_timeout = "5"
    default_child_policy = "TERMINATE"

    def run(self):
        activities = self.task.activities
        carried = self.task.input or ""
        for leg in LEGS:
            attempts = [a for a in activities.values() if a.id.startswith(f"{leg}#")]
            latest = max(attempts, key=lambda a: a.scheduled_event_id, default=None)
            if latest is not None and latest.status == "completed":
                carried = latest.result
                continue
            if latest is not None and not latest.closed:
                self.task.decision_done(msg=f"waiting for {latest.id}")
            if len(attempts) >= MAX_ATTEMPTS:
                self.task.fail(f"{leg} failed {len(attempts)} times", latest.reason or latest.status)
            self.task.schedule_activity(
                f"{leg}#{len(attempts) + 1}", "Leg", "1.0", json.dumps({"leg": leg, "carried": carried}),
                task_list=TASK_LIST,
            )  # fmt: skip
            return
        self.task.complete(carried)
