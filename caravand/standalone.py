"""``caravan-decider`` and ``caravan-activity``: one poller in the foreground.

The seed's way to run a decider, kept for development and for small setups;
caravand runs the same pollers as supervised child processes. SIGTERM or a
first Ctrl-C stops after the poll in flight and the task in hand; a second
Ctrl-C quits at once.
"""

from __future__ import annotations

import signal
import sys

from caravand.activity_worker import ActivityWorker
from caravand.ctl import Context, Parser, add_common, run
from caravand.decider import ON_ERROR, Decider


def poller_arguments(parser, register_flag: str, kind: str) -> None:
    add_common(parser, suppress=False, short_verbose=False)
    parser.add_argument(
        "-m", "--modules", nargs="+", required=True, metavar="MODULE", help=f"modules of {kind} classes"
    )
    parser.add_argument("-t", "--task-list", required=True)
    parser.add_argument("--identity", help="who polls, as SWF shows it (default: host:pid)")
    parser.add_argument(
        register_flag, dest="register", action="store_true", default=True, help="register the types (the default)"
    )
    parser.add_argument("--no-register", dest="register", action="store_false", help="do not register the types")


def serve(poller) -> int:
    """Run ``poller`` until SIGTERM or Ctrl-C; a second Ctrl-C interrupts at once."""
    interrupts = 0

    def on_signal(signum, frame):
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
        poller.stop()  # only sets flags: safe in a handler

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poller.start()
    poller.run_forever()
    return 0


def decider(ctx: Context, args) -> int:
    poller = Decider.from_modules(
        ctx.endpoint,
        ctx.domain,
        args.task_list,
        args.modules,
        identity=args.identity,
        register=args.register,
        on_error=args.on_error,
    )
    return serve(poller)


def activity(ctx: Context, args) -> int:
    poller = ActivityWorker.from_modules(
        ctx.endpoint, ctx.domain, args.task_list, args.modules, identity=args.identity, register=args.register
    )
    return serve(poller)


def decider_main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="caravan-decider", description="Run one decider in the foreground.")
    poller_arguments(parser, "--register-workflows", "Workflow")
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="retry",
        help="on an exception in run() or an unknown type: leave the task to time out "
        "so SWF retries it (retry), or fail the execution (fail)",
    )
    parser.set_defaults(run=decider)
    return run(parser, argv)


def activity_main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="caravan-activity", description="Run one activity worker in the foreground.")
    poller_arguments(parser, "--register-activities", "Activity")
    parser.set_defaults(run=activity)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(decider_main())
