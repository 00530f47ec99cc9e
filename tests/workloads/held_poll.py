"""A pool whose first poll is held open the way real SWF holds one, for ``use = call:held_poll:factory``.

The emulator answers every poll at once (or after 1 s, empty); real SWF
keeps a poll open up to 60 s and may hand over a task at its very end. This
pool's first poll writes ``<signal_dir>/poll-held`` (its pid), then blocks
until ``<signal_dir>/release-poll`` exists (at most ``hold`` seconds), then
polls for real until the task the test scheduled arrives, and returns it:
that task must be run and answered even if a stop came meanwhile.
"""

import os
import pathlib
import time

from caravand import Activity
from caravand.activity_worker import ActivityWorker


class Answer(Activity):
    """Returns "answered after a held poll"."""

    name = "Answer"
    version = "1.0"
    default_task_list = "held"
    default_task_start_to_close_timeout = "60"
    default_task_schedule_to_start_timeout = "300"
    default_task_schedule_to_close_timeout = "600"
    default_task_heartbeat_timeout = "NONE"

    def run(self):
        return "answered after a held poll"


class HeldPollWorker(ActivityWorker):
    def __init__(self, *args, signal_dir, hold, **kwargs):
        super().__init__(*args, **kwargs)
        self.signal_dir = pathlib.Path(signal_dir)
        self.hold = hold
        self.held = False

    def poll_once(self):
        if self.held:
            return super().poll_once()
        self.held = True
        (self.signal_dir / "poll-held").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.hold
        while not (self.signal_dir / "release-poll").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # signals interrupt this sleep; their handlers only set flags
        (self.signal_dir / "poll-released").write_text(str(os.getpid()))
        for _ in range(10):  # the task the test scheduled while the poll was held
            data = super().poll_once()
            if data:
                return data
        return None


class HeldPollPool:
    kind = "activity"

    def __init__(self, signal_dir, hold):
        self.signal_dir = signal_dir
        self.hold = hold

    def make_poller(self, endpoint, *, domain, task_list, identity, hooks):
        return HeldPollWorker(
            endpoint,
            domain,
            task_list,
            [Answer],
            identity=identity,
            hooks=hooks,
            signal_dir=self.signal_dir,
            hold=self.hold,
        )


def factory(global_conf, signal_dir, hold="30"):
    return HeldPollPool(signal_dir, float(hold))
