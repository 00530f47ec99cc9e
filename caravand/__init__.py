"""caravand: run fleets of AWS SWF deciders and activity workers.

The authoring API: ``Workflow`` (decider logic, reading a ``DecisionTask``)
and ``Activity`` (work, reading an ``ActivityTask``).
"""

from caravand.activity import Activity, ActivityCanceled, ActivityTask
from caravand.workflow import DecisionDone, DecisionTask, TaskState, Workflow, WorkflowFailure

#: The one place of the version: setup.py reads this line (without importing the package).
__version__ = "0.1.0"

__all__ = [
    "Activity",
    "ActivityCanceled",
    "ActivityTask",
    "DecisionDone",
    "DecisionTask",
    "TaskState",
    "Workflow",
    "WorkflowFailure",
]
