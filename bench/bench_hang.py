"""An activity stuck past its deadline, for the supervision benchmark's hung child (``--only hung``)."""

import os
import pathlib
import time

from caravand import Activity

#: The start-to-close timeout the child declares as its deadline; the master kills it heartbeat_grace later.
DEADLINE_SECONDS = 2


class HangForever(Activity):
    """Write ``PID TIME`` (time.time() at start) into the file its input names, then sleep forever."""

    name = "HangForever"
    version = "1.0"
    default_task_list = "bench-hang"
    default_task_schedule_to_start_timeout = "60"
    default_task_start_to_close_timeout = str(DEADLINE_SECONDS)
    default_task_schedule_to_close_timeout = "120"
    default_task_heartbeat_timeout = "NONE"

    def run(self):
        pathlib.Path(self.task.input).write_text(f"{os.getpid()} {time.time():.6f}")
        while True:
            time.sleep(3600)
