"""The frame of caravand's command lines: parsing, the common options, the context a command runs in.

``caravanctl`` and the seed's ``caravan-*`` aliases (their commands are in
:mod:`caravand.ctl`), and the foreground pollers ``caravan-decider`` and
``caravan-activity`` (:mod:`caravand.standalone`) build a :class:`Parser`,
add the :func:`add_common` options and hand it to :func:`run`, which runs
``args.run`` in a :class:`Context`. ``caravand`` itself (:mod:`caravand.main`)
takes only the :class:`Parser`.

Exit codes: 0 ok, 1 the request failed (SWF refused it or could not be
reached), 2 usage (the command line cannot be read), 78 configuration (ini,
credentials, region, profile, or a port or directory that a setting or a
flag names and that cannot be had). Every error is one line on stderr; no
traceback reaches the user. Every call to SWF ends within
``swf.CALL_BUDGET`` seconds (about 15), its retries included.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
import urllib.parse

from caravand import output, swf
from caravand.config import is_loopback, read_ini, setup_logging
from caravand.swf import CaravanError, UsageError

log = logging.getLogger("caravand.ctl")  # the calls are caravanctl's commands': logged under its name

#: Shown by --help, and the README says the same.
EXIT_CODES = """\
exit codes:
  0   done
  1   the request failed: SWF refused it (its error code and message) or could not be reached
  2   usage: the command line cannot be read (a bad flag or value)
  78  configuration: the ini, credentials, region or profile, or a port or directory
      that a setting or a flag names and that cannot be had (a port in use)
every error is one line on stderr; every call to SWF ends within about 15 s, retries included"""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2, and whose --help names the exit codes.

    A word such as ``-1d`` is a value, not an option: ``--oldest -1d``
    means one day ago, as ``--oldest 1d`` does.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EXIT_CODES)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+[smhdw]$")

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def endpoint_url(value: str) -> str:
    """An http(s) URL with a host, as botocore wants it; checked here so that a typo is a usage error."""
    try:
        parts = urllib.parse.urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{value!r} is not an endpoint URL: expected http(s)://HOST[:PORT]")
    return value


#: The operations moto's emulator lacks (it answers them with an HTTP 500).
EMULATOR_LACKS = frozenset(
    {
        "CountClosedWorkflowExecutions",
        "CountOpenWorkflowExecutions",
        "DeleteActivityType",
        "DeleteWorkflowType",
        "RequestCancelWorkflowExecution",
        "RespondActivityTaskCanceled",
    }
)


class Context:
    """The parsed options, where SWF is, and one lazily built client."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        # -c: the ini read once, and only its [caravand] validated (and the
        # pools' domains read as written): no pool module is imported here.
        self.ini = read_ini(args.config) if args.config else None
        self.master = self.ini.master() if self.ini else None
        base = self.master.endpoint() if self.master else swf.Endpoint()
        self.endpoint = base.with_overrides(endpoint_url=args.endpoint_url, region=args.region, profile=args.profile)

    @functools.cached_property
    def client(self):
        """A client whose every call (retries included) ends within swf.CALL_BUDGET seconds."""
        return swf.BoundedClient(swf.Clients(self.endpoint))

    @functools.cached_property
    def emulator(self) -> bool:
        """Whether SWF here is moto's emulator, whose list filters misbehave.

        That is the embedded endpoint, or any endpoint on loopback (a moto
        server of ``caravanctl local-endpoint`` or of the tests), however it
        was named: ``-c``, ``--endpoint-url`` or ``AWS_ENDPOINT_URL_SWF``.
        """
        return self.endpoint.embedded or is_loopback(self.client.meta.endpoint_url)

    @property
    def domain(self) -> str:
        if self.args.domain:
            return self.args.domain
        # With -c, an ini whose pools all use one domain makes it the default.
        domains = self.ini.pool_domains() if self.ini else set()
        if len(domains) == 1:
            return domains.pop()
        raise UsageError("no domain: give -d/--domain")

    @property
    def json(self) -> bool:
        return self.args.json

    def call(self, method: str, **params) -> dict:
        log.info("calling %s", swf.api_name(self.client, method))
        try:
            return swf.call(self.client, method, **params)
        except swf.SWFError as exc:
            raise self.explain(exc) from exc

    def paginate(self, method: str, result_key: str, **params) -> list[dict]:
        log.info("listing %s", swf.api_name(self.client, method))
        try:
            return list(swf.paginate(self.client, method, result_key, **params))
        except swf.SWFError as exc:
            raise self.explain(exc) from exc

    def explain(self, exc: swf.SWFError) -> swf.SWFError:
        """The emulator's HTTP 500 (a page of HTML) said as what it means: an operation or region it lacks."""
        if exc.status is None or exc.status < 500 or not self.emulator:
            return exc
        region = self.client.meta.region_name
        if exc.operation in EMULATOR_LACKS:
            why = f"the local SWF endpoint (moto's emulator) does not implement {exc.operation}; real SWF does"
        elif not known_region(region):
            why = f"the local SWF endpoint knows no region {region!r}: give an AWS region such as us-east-1"
        else:
            why = f"the local SWF endpoint (moto's emulator) failed on it; it lacks parts of SWF: {exc.message}"
        return swf.SWFError(exc.operation, f"HTTP {exc.status}", why, exc.status)

    def done(self, message: str, data: dict | None = None) -> int:
        """Report a successful change: JSON for programs, one line for people."""
        if self.json:
            output.dump_json(data or {})
        else:
            print(message)
        return 0


def known_region(region: str | None) -> bool:
    """Whether botocore knows ``region`` for SWF in any partition (aws, aws-cn, aws-us-gov...)."""
    import boto3

    session = boto3.Session()
    return any(
        region in session.get_available_regions("swf", partition_name=partition)
        for partition in session.get_available_partitions()
    )


def add_common(parser, *, suppress: bool, short_verbose: bool, verbose_help: str = "log to stderr") -> None:
    """The options every command takes, before or after its name.

    On sub-parsers (``suppress``) they default to SUPPRESS, so that an option
    given before the command is not reset by the sub-parser's default.
    ``-v`` means --verbose only where no command uses it for --version.
    """
    unset, off = (argparse.SUPPRESS, argparse.SUPPRESS) if suppress else (None, False)
    parser.add_argument("-c", "--config", metavar="INI", default=unset, help="read [caravand] of this ini")
    parser.add_argument("-d", "--domain", default=unset, help="SWF domain")
    parser.add_argument("--endpoint-url", metavar="URL", type=endpoint_url, default=unset, help="SWF endpoint URL")
    parser.add_argument("--region", default=unset, help="AWS region")
    parser.add_argument("--profile", default=unset, help="AWS profile")
    parser.add_argument("--json", action="store_true", default=off, help="print JSON")
    verbose = ("-v", "--verbose") if short_verbose else ("--verbose",)
    parser.add_argument(*verbose, action="store_true", default=off, help=verbose_help)
    parser.add_argument("--debug", action="store_true", default=off, help="log botocore too")


#: A command's log line on stderr (caravand's names its process too).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level(args, quiet: int) -> int:
    """``quiet`` without --verbose or --debug; one step more with --verbose; everything with --debug."""
    if args.debug:
        return logging.DEBUG
    if args.verbose:
        return logging.DEBUG if quiet <= logging.INFO else logging.INFO
    return quiet


def run(parser: Parser, argv: list[str] | None, *, quiet: int = logging.WARNING) -> int:
    """Parse, run ``args.run(Context(args), args)``, and turn every known error into one line and its exit code.

    ``quiet``: the log level without --verbose (caravanctl: warnings; the
    pollers: INFO, one line per task).
    """
    try:
        args = parser.parse_args(argv)
        setup_logging(level=log_level(args, quiet), fmt=LOG_FORMAT, quiet_libraries=not args.debug)
        return args.run(Context(args), args)
    except CaravanError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `caravanctl list | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
