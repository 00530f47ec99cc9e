"""A Demo-like workflow module that records which process imported it (in $IMPORT_PROBE)."""

import os

from caravand import Workflow

with open(os.environ["IMPORT_PROBE"], "a") as probe:
    probe.write(f"{os.getpid()}\n")


class Probe(Workflow):
    name = "Probe"
    version = "1.0"
    default_task_list = "default"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_child_policy = "TERMINATE"

    def run(self):
        self.task.complete("probed")
