"""A workflow that runs an AWS Lambda function as a task (the seed's first promise).

SWF invokes the function itself, with the IAM role given as ``--lambda-role``
when the execution starts (or the type's ``default_lambda_role``); no
activity worker is involved. The local emulator has no Lambda: this
workflow needs real SWF (its decisions are tested with botocore's Stubber).
"""

from caravand import Workflow

FUNCTION = "caravand-hello"


class LambdaDemo(Workflow):
    """Call one Lambda function with the execution's input; complete with its result."""

    name = "LambdaDemo"
    version = "1.0"
    default_task_list = "lambda-demo"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "30"
    default_child_policy = "TERMINATE"
    # An IAM role that lets SWF invoke the function, e.g.
    # "arn:aws:iam::123456789012:role/swf-lambda"; or --lambda-role at start.
    default_lambda_role = None

    def run(self):
        call = self.task.lambdas.get("hello")
        if call is None:
            self.task.schedule_lambda("hello", FUNCTION, self.task.input, start_to_close_timeout="60")
        elif call.status == "completed":
            self.task.complete(call.result)
        elif call.closed:
            self.task.fail(f"lambda {call.status}", call.reason or call.details or call.timeout_type or "-")
