"""``caravand caravan.ini [key=value ...]``: the daemon's command line.

Foreground by default (systemd's Type=notify, or a terminal); ``--daemon``
detaches with python-daemon's DaemonContext. ``--check`` validates the ini,
imports each pool's modules in a throwaway child, and prints its pools
without starting anything; a start checks the modules the same way first.
Exit codes: 0 stopped cleanly, 1 could not run (another master holds the
pidfile...), 2 usage, 78 configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from caravand import __version__, metrics, swf
from caravand.cli import Parser
from caravand.config import Config, check_overrides, load, read_ini, setup_logging, split_overrides
from caravand.loader import check_imports_in_child
from caravand.output import table
from caravand.pidfile import PidFile
from caravand.swf import CaravanError, ConfigError, UsageError

log = logging.getLogger("caravand")

EPILOG = """\
exit codes:
  0   stopped cleanly (TERM, INT, QUIT)
  1   could not run (another caravand holds the pidfile, the OS refused...)
  2   usage: a bad option or key=value
  78  invalid configuration (EX_CONFIG): the ini, or a pool module that does
      not import; systemd's unit does not restart on it

signals to the master:
  TERM  graceful stop: children finish the poll in flight and the task in
        hand; SIGKILL after graceful_timeout
  INT   like TERM; a second INT is QUIT
  QUIT  fast stop: polls abandoned, tasks in hand still finished
  HUP   reload the ini: refused if invalid, else the difference is applied
  TTIN  one more child in every pool
  TTOU  one child fewer in every pool
  USR1  reopen log files
"""


def build_parser() -> Parser:
    parser = Parser(
        prog="caravand",
        description="Run the SWF decider and activity pools of an ini file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="INI", help="the caravan.ini to run")
    parser.add_argument(
        "overrides",
        nargs="*",
        default=[],  # optional: argparse counts a "*" positional without a default as required
        metavar="key=value",
        help="a [caravand] setting, or a [DEFAULT] value the ini uses as %%(key)s",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the ini, import each pool's modules (in a throwaway process), print the pools, start nothing",
    )
    parser.add_argument("--daemon", action="store_true", help="detach (not under systemd); needs a pidfile")
    parser.add_argument("--pidfile", help="hold this pidfile (default: the ini's pidfile)")
    parser.add_argument(
        "--log-file", help="with --daemon: where stdout and stderr go (default: the ini's log_file, else PIDFILE.log)"
    )
    parser.add_argument("--version", action="version", version=f"caravand {__version__}")
    return parser


def print_pools(config: Config) -> None:
    master = config.master
    print(f"{config.path}: ok")
    endpoint = master.endpoint()
    where = endpoint.endpoint_url or "boto3's chain (AWS_ENDPOINT_URL_SWF, or AWS)"
    print(f"endpoint: {where}{' (embedded)' if master.embedded else ''}")
    rows = [
        [spec.name, spec.kind, spec.domain, spec.task_list, spec.processes_text, spec.use]
        for spec in config.pools.values()
    ]
    if rows:
        table(["POOL", "KIND", "DOMAIN", "TASK LIST", "PROCESSES", "USE"], rows)
    else:
        print("no pools")


def under_systemd(environ=os.environ) -> bool:
    return bool(environ.get("INVOCATION_ID") or environ.get("NOTIFY_SOCKET"))


def check_aws_setup(config: Config) -> None:
    """Refuse a start that every child would fail to boot on: an unknown profile, or no region (78).

    Neither needs the network; credentials (which may come from the
    instance's role) are left to the children. Without this, caravand ran
    on with each pool crash-looping to FATAL, where caravanctl and the
    pollers exit 78 for the same setup. Not part of --check: the shell that
    checks an ini need not have the service's environment.
    """
    endpoint = config.master.endpoint()
    if endpoint.embedded:
        return
    try:
        session = swf.make_session(endpoint)
    except ConfigError:
        name = endpoint.profile or os.environ.get("AWS_PROFILE")
        raise ConfigError(
            f"{config.path}: [caravand] profile: no AWS profile {name!r} in ~/.aws/config (or AWS_CONFIG_FILE): "
            f"check profile in [caravand] and AWS_PROFILE"
        ) from None
    if not (endpoint.region or session.region_name):
        raise ConfigError(
            f"{config.path}: [caravand] region: none set, and no AWS region in the environment: set region "
            f"in [caravand], AWS_DEFAULT_REGION, or region in ~/.aws/config"
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        overrides = split_overrides(args.config, args.overrides)
        ini = read_ini(args.config)  # once: the overrides are checked against it, then it is loaded
        check_overrides(ini, overrides)
        config = load(ini, overrides)
        # The modules import in a throwaway child: the master stays clean
        # (without preload), and a broken one is refused here, not in a crash loop.
        check_imports_in_child(config, logging=args.check)
    except CaravanError as exc:
        print(f"caravand: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.check:
        print_pools(config)
        return 0
    pidfile = args.pidfile or config.master.pidfile or None
    if pidfile:  # the daemon changes directory: a relative path would name another file
        pidfile = os.path.abspath(pidfile)
    try:
        check_aws_setup(config)
        if args.daemon:
            if under_systemd():
                raise UsageError("--daemon is refused under systemd: run in the foreground (Type=notify)")
            if not pidfile:
                raise UsageError("--daemon needs a pidfile: --pidfile PATH, or pidfile in [caravand]")
            return run_daemon(config, pidfile, args.log_file or config.master.log_file or f"{pidfile}.log")
        setup_logging(config, level=logging.INFO)
        lock = PidFile(pidfile) if pidfile else None
        if lock:
            lock.acquire()
        try:
            return run_master(config, lock)
        finally:
            if lock:
                lock.release()
    except CaravanError as exc:
        print(f"caravand: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def run_master(config: Config, lock: PidFile | None, log_file: str | None = None) -> int:
    # Metrics: the directory every process writes its values to, named in
    # the environment before prometheus_client is first imported (by the
    # master's modules, below), so that the master and every child use it.
    if config.master.metrics_bind:
        metrics.prepare(os.getpid())
    try:
        from caravand.master import Master

        master = Master(config)
        master.log_file = log_file  # --daemon's output: USR1 reopens it in the master and every child
        if lock is not None and lock.fd is not None:
            master.extra_fds.append(lock.fd)
        return master.run()
    finally:
        metrics.remove_dir()


def run_daemon(config: Config, pidfile: str, log_file: str) -> int:
    """Detach with python-daemon; the flock pidfile is taken after detaching, so it holds the daemon's pid."""
    import daemon

    log_file = os.path.abspath(log_file)  # the daemon changes directory
    lock = PidFile(pidfile)
    # Fail in the foreground, where the user sees it, if another master runs.
    lock.acquire()
    lock.release()
    try:
        output = open(log_file, "a", buffering=1)  # noqa: SIM115 - lives as long as the daemon
    except OSError as exc:
        raise ConfigError(f"--log-file {log_file}: {exc.strerror}") from None
    context = daemon.DaemonContext(
        pidfile=lock,
        umask=0o027,
        working_directory=os.path.dirname(config.path),
        stdout=output,
        stderr=output,
        files_preserve=[output],
        signal_map={},  # the master installs its own handlers
    )
    with context:
        # Logging is set up here, not before: DaemonContext closes every
        # descriptor it was not told to keep, log files included.
        setup_logging(config, level=logging.INFO)
        return run_master(config, lock, log_file)


if __name__ == "__main__":
    sys.exit(main())
