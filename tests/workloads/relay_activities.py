"""The reliability suite's activity: ``Leg`` heartbeats with a short timeout (the emulator enforces it) and works a little.

The work (WORK_SECONDS) is there so that kills and stops find tasks in hand.
"""

import time

from caravand import Activity

TASK_LIST = "relay-legs"


class Leg(Activity):
    """Works ``WORK_SECONDS``, heartbeating, then passes its input on with its leg's name appended."""

    name = "Leg"
    version = "1.0"
    default_task_list = TASK_LIST
    default_task_heartbeat_timeout = "3"
    default_task_start_to_close_timeout = "10"
    default_task_schedule_to_start_timeout = "NONE"
    default_task_schedule_to_close_timeout = "NONE"

    WORK_SECONDS = 0.2

    def run(self):
        params = self.task.input_json
        self.task.heartbeat("working")
        time.sleep(self.WORK_SECONDS)
        return f"{params['carried']}>{params['leg']}"
