"""The seed's Demo workflow, on caravand's API.

Start it, then signal it: PRINT prints the signal's input in the decider's
output, STOP completes the execution, ABORT fails it. With no signal for
5 minutes, its timer fires and the execution fails with ``patience_lost``.
"""

from caravand import Workflow


class Demo(Workflow):
    """Waits for signals, using the bare (seed-compatible) API."""

    name = "Demo"
    version = "0.1"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_task_list = "default"
    default_child_policy = "TERMINATE"

    #: How long to wait for a signal, in seconds.
    patience = 300

    def run(self):
        # For development, print the history events.
        print("")
        self.task.print_events()

        # Only what happened since the last decision: a decider can be handed
        # the same point of a history twice, and must not act on it twice.
        events = [e for e in self.task.new_events if not e["eventType"].startswith("Decision")]
        if not events:
            self.task.decision_done(msg="NothingNew")

        for event in events:
            if event["eventType"] == "WorkflowExecutionStarted":
                # Wait for a signal, but not forever.
                self.task.add_decision("StartTimer", startToFireTimeout=str(self.patience), timerId="SignalTimeout")

            elif event["eventType"] == "TimerFired":
                self.task.fail("patience_lost")

            elif event["eventType"] == "WorkflowExecutionSignaled":
                signal_name = event["attributes"]["signalName"].upper()
                if signal_name == "ABORT":
                    self.task.fail("aborted")
                elif signal_name == "PRINT":
                    signal_input = event["attributes"].get("input")
                    print(f"\nThe signal input is: '{signal_input}'")
                elif signal_name == "STOP":
                    self.task.add_decision("CompleteWorkflowExecution", result='{"success": true}')
                    return
                else:
                    print(f"Unknown signal '{signal_name}'")
