"""Activities for the end-to-end tests, steered by files so that tests wait on conditions, not on time."""

import os
import pathlib
import time

from caravand import Activity


class WaitForRelease(Activity):
    """Writes ``<dir>/started``, then works until ``<dir>/release`` exists; returns "released"."""

    name = "WaitForRelease"
    version = "1.0"
    default_task_list = "slow"
    default_task_start_to_close_timeout = "120"
    default_task_schedule_to_close_timeout = "300"

    def run(self):
        directory = pathlib.Path(self.task.input)
        (directory / "started").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not (directory / "release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.05)
        return "released"
