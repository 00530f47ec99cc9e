"""``Stall``: its first attempt, when asked to stall, works until killed; any other returns at once.

A short start-to-close timeout (3 s) and no heartbeat timeout: only
START_TO_CLOSE can end a task whose worker was killed.
"""

import time

from caravand import Activity

TASK_LIST = "stall-work"


class Stall(Activity):
    name = "Stall"
    version = "1.0"
    default_task_list = TASK_LIST
    default_task_start_to_close_timeout = "3"
    default_task_heartbeat_timeout = "NONE"
    default_task_schedule_to_start_timeout = "NONE"
    default_task_schedule_to_close_timeout = "NONE"

    def run(self):
        params = self.task.input_json
        if params["stall"] and params["attempt"] == 1:
            time.sleep(600)  # until the test kills this worker
        return f"done at attempt {params['attempt']}"
