"""Activities that hang far past their start-to-close timeout, for the master's watch on hung children."""

import os
import pathlib
import signal
import time

from caravand import Activity


def stuck_forever():
    """Where the stack dump of a hung child must point: sleeps, never returns."""
    while True:
        time.sleep(3600)


class Hang(Activity):
    """Writes its pid into the file its input names, then hangs; its start-to-close timeout is 2 s."""

    name = "Hang"
    version = "1.0"
    default_task_list = "hang"
    default_task_start_to_close_timeout = "2"
    default_task_schedule_to_start_timeout = "300"
    default_task_schedule_to_close_timeout = "600"
    default_task_heartbeat_timeout = "NONE"

    def run(self):
        pathlib.Path(self.task.input).write_text(str(os.getpid()))
        stuck_forever()


class HangDeaf(Hang):
    """Like Hang, but ignores SIGABRT (as a process stuck where no handler runs would): only SIGKILL ends it."""

    name = "HangDeaf"
    default_task_list = "deaf"

    def run(self):
        signal.signal(signal.SIGABRT, signal.SIG_IGN)
        super().run()
