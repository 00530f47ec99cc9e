"""``caravan-decider`` and ``caravan-activity``: one poller in the foreground.

The seed's way to run a decider, kept for development and for small setups;
caravand runs the same pollers as supervised child processes. SIGTERM or a
first Ctrl-C stops after the poll in flight and the task in hand; a second
Ctrl-C quits at once.

As ``python -m`` and gunicorn do, the working directory comes first on
``sys.path``, after the directories of ``--pythonpath``: a user's module
beside them is found. Each task is one line on stderr at the default level,
as under the daemon.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from caravand import swf
from caravand.activity import Activity
from caravand.activity_worker import ActivityWorker
from caravand.cli import Context, Parser, add_common, run
from caravand.decider import ON_ERROR, Decider
from caravand.loader import add_to_sys_path, load_classes
from caravand.workflow import Workflow

PYTHONPATH_HELP = "directories searched first for the modules, comma-separated (as gunicorn's --pythonpath)"
#: What a module found nowhere tells the user to do (caravand's message says: pythonpath in [caravand]).
IMPORT_HINT = "run from its directory, give --pythonpath DIR, or install the package"
#: One line per task (deciding:, working:) and the start and stop lines, as the daemon's children log.
LOG_LEVEL = logging.INFO


def poller_arguments(parser, register_flag: str, kind: str) -> None:
    add_common(parser, suppress=False, short_verbose=False, verbose_help="log debug lines too")
    parser.add_argument(
        "-m", "--modules", nargs="+", required=True, metavar="MODULE", help=f"modules of {kind} classes"
    )
    parser.add_argument("-t", "--task-list", required=True)
    parser.add_argument("--pythonpath", metavar="DIR[,DIR...]", help=PYTHONPATH_HELP)
    parser.add_argument("--identity", help="who polls, as SWF shows it (default: host:pid)")
    parser.add_argument(
        register_flag, dest="register", action="store_true", default=True, help="register the types (the default)"
    )
    parser.add_argument("--no-register", dest="register", action="store_false", help="do not register the types")


def search_path(pythonpath: str | None) -> list[str]:
    """``--pythonpath``'s directories (relative to the working directory), then the working directory.

    A directory that does not exist is a configuration error (78): a flag
    naming what cannot be had, which would otherwise only show as a module
    not found.
    """
    directories = []
    for entry in (pythonpath or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        if not os.path.isdir(entry):
            raise swf.ConfigError(f"--pythonpath {entry}: no such directory")
        directories.append(os.path.abspath(entry))
    return [*directories, os.getcwd()]


def load(poller_class, base, ctx: Context, args, **kwargs):
    """The poller of ``args.modules``, found as ``python -m`` and gunicorn find modules.

    A module found nowhere is one line that says where the import looked
    and what to do (caravand.loader.not_found, with our hint).
    """
    add_to_sys_path(search_path(args.pythonpath))
    classes = load_classes(args.modules, base, hint=IMPORT_HINT)
    return poller_class(
        ctx.endpoint, ctx.domain, args.task_list, classes, identity=args.identity, register=args.register, **kwargs
    )


def start(poller) -> None:
    """Build the poller's clients, and register its types with calls bounded as caravanctl's are.

    An endpoint that accepts connections and never answers then fails the
    start in about swf.CALL_BUDGET seconds, instead of the ordinary client's
    three attempts of a 20 s read. Polls keep their own (long) timeouts.
    """
    register, poller.register = poller.register, False
    poller.start()
    poller.register = register
    if not register:
        return
    ordinary, poller.client = poller.client, swf.BoundedClient(poller.clients)
    # A failed registration is one line, as in caravanctl: the retries'
    # notes (caravand.swf, INFO) show with --verbose only; the error that
    # ends the start says how many attempts were made.
    notes = logging.getLogger("caravand.swf")
    level = notes.level
    if not notes.isEnabledFor(logging.DEBUG):
        notes.setLevel(logging.WARNING)
    try:
        poller.register_types()
    finally:
        poller.client = ordinary
        notes.setLevel(level)


#: Said on the first Ctrl-C: SWF may hold the poll in flight a minute, and a silent minute looks hung.
STOPPING_NOTE = (
    "{prog}: stopping after the poll in flight (SWF may hold it up to {hold:g} s) and the task in hand; "
    "Ctrl-C again to quit at once\n"
)


def serve(poller, prog: str = "caravan-poller") -> int:
    """Run ``poller`` until SIGTERM or Ctrl-C; a second Ctrl-C interrupts at once."""
    interrupts = 0
    hold = getattr(poller.endpoint, "poll_hold", swf.SWF_POLL_HOLD)

    def on_signal(signum, frame):
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
            try:  # a plain write: the main thread may be inside logging's lock
                os.write(sys.stderr.fileno(), STOPPING_NOTE.format(prog=prog, hold=hold).encode())
            except (OSError, ValueError):
                pass
        poller.stop()  # only sets flags: safe in a handler

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start(poller)
    poller.run_forever()
    return 0


def decider(ctx: Context, args) -> int:
    return serve(load(Decider, Workflow, ctx, args, on_error=args.on_error), "caravan-decider")


def activity(ctx: Context, args) -> int:
    return serve(load(ActivityWorker, Activity, ctx, args), "caravan-activity")


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
    return run(parser, argv, quiet=LOG_LEVEL)


def activity_main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="caravan-activity", description="Run one activity worker in the foreground.")
    poller_arguments(parser, "--register-activities", "Activity")
    parser.set_defaults(run=activity)
    return run(parser, argv, quiet=LOG_LEVEL)


if __name__ == "__main__":
    sys.exit(decider_main())
