"""A workflow module that imports everywhere but in a pool's children, where it raises.

caravand refuses to start a pool whose modules do not import (its check runs
them in a throwaway process): this one passes that check, and stands for a
module that fails only where the workers run (a resource only they reach),
so that the master's backoff and FATAL can be seen.
"""

import setproctitle

from caravand import Workflow

if setproctitle.getproctitle().startswith("caravand: decider "):
    raise RuntimeError("boot_failure fails in a pool's children, on purpose")


class BootFailure(Workflow):
    name = "BootFailure"
    version = "1.0"
