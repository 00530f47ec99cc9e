"""The Greeting workflow: two activities in sequence, each retried up to 3 times.

Input (JSON): ``{"name": "World"}``; the result is ``Hello, World!``. The
activities live in :mod:`caravand.examples.greeting_activities`; this module
knows only their names and versions, never their code.

``"fail_attempts": N`` in the input makes the Greet activity fail its first
N attempts, to show the retries.
"""

import json

from caravand import Workflow

ACTIVITY_TASK_LIST = "greeting-activities"
MAX_ATTEMPTS = 3
#: The steps, in order: (step, activity type name, version).
STEPS = (("normalize", "NormalizeName", "1.0"), ("greet", "Greet", "1.0"))


class Greeting(Workflow):
    """Normalize a name, then greet it; complete with the greeting."""

    name = "Greeting"
    version = "1.0"
    description = "Two activities in sequence, with retries"
    default_task_list = "greeting"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "30"
    default_child_policy = "TERMINATE"

    def run(self):
        params = self.task.input_json or {}
        activities = self.task.activities
        result = params.get("name", "World")
        for step, activity_name, version in STEPS:
            attempts = [a for a in activities.values() if a.id.startswith(f"{step}#")]
            latest = max(attempts, key=lambda a: a.scheduled_event_id, default=None)
            if latest is not None and latest.status == "completed":
                result = latest.result
                continue
            if latest is not None and not latest.closed:
                self.task.decision_done(msg=f"waiting for {latest.id}")
            if len(attempts) >= MAX_ATTEMPTS:
                self.task.fail(f"{step} failed {len(attempts)} times", latest.reason or latest.status)
            attempt = len(attempts) + 1
            activity_input = {"value": result, "attempt": attempt, "fail_attempts": params.get("fail_attempts", 0)}
            self.task.schedule_activity(
                f"{step}#{attempt}", activity_name, version, json.dumps(activity_input), task_list=ACTIVITY_TASK_LIST
            )
            return
        self.task.complete(result)
