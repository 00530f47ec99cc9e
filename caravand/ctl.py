"""caravanctl: the operator's command line to SWF, and the seed's caravan-* aliases.

Each command is one :class:`Command` record: its arguments and the function
that runs it. ``caravanctl`` mounts them as sub-commands; a seed alias such
as ``caravan-start`` is the same record under a parser of its own, so both
accept the same flags and behave the same.

Exit codes: 0 ok, 1 the request failed (SWF refused it or could not be
reached), 2 usage (the command line cannot be read), 78 configuration (ini,
credentials, region, profile, or a port or directory that a setting or a
flag names and that cannot be had). Every error is one line on stderr; no
traceback reaches the user. Every call to SWF ends within
``swf.CALL_BUDGET`` seconds (about 15), its retries included.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import logging
import re
import sys
import time
import urllib.parse
from collections.abc import Callable

from caravand import __version__, embedded, output, swf
from caravand.config import DEFAULT_EMBEDDED_PORT, is_loopback, read_ini, setup_logging
from caravand.swf import CaravanError, UsageError
from caravand.timespec import (
    DURATION_HELP,
    UTC,
    WHEN_HELP,
    format_age,
    format_time,
    parse_duration,
    parse_when,
)

log = logging.getLogger("caravand.ctl")

CHILD_POLICIES = ("TERMINATE", "REQUEST_CANCEL", "ABANDON")
CLOSE_STATUSES = ("COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW", "TIMED_OUT")
#: An execution can stay open for a year: look that far back to find one by id.
MAX_EXECUTION_AGE = datetime.timedelta(days=366)
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
#: How often ``start --wait-type`` asks whether the type is registered (SWF refills Describe* at 6/s).
WAIT_TYPE_INTERVAL = 0.5
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


# -- argument types: each returns the clean value or raises with what it expected


def limited(what: str, limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > limit:
            raise argparse.ArgumentTypeError(f"{what} is {len(value)} characters long; SWF accepts at most {limit}")
        return value

    return check


def when(value: str) -> datetime.datetime:
    try:
        return parse_when(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(value: str) -> str:
    try:
        return str(parse_duration(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def retention(value: str) -> str:
    if value.upper() == "NONE":
        return "NONE"
    if value.isdigit() and 0 <= int(value) <= 90:
        return str(int(value))
    raise argparse.ArgumentTypeError(f"{value!r} is not a retention: expected 0 to 90 days, or NONE")


def priority(value: str) -> str:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a priority: expected an integer") from None
    if not -(2**31) <= number < 2**31:
        raise argparse.ArgumentTypeError(f"priority {value} is out of range (a 32-bit integer)")
    return str(number)


def tag_list(value: str) -> list[str]:
    tags = value.split()
    if len(tags) > swf.MAX_TAGS:
        raise argparse.ArgumentTypeError(f"{len(tags)} tags given; SWF accepts at most {swf.MAX_TAGS}")
    for tag in tags:
        limited("a tag", swf.MAX_NAME)(tag)
    return tags


def port_number(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port: expected 0 to 65535 (0: any free port)")
    return int(value)


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


def wait_seconds(value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


identifier = limited("the workflow id", swf.MAX_NAME)
payload = limited("--input", swf.MAX_INPUT)


# -- the context every command runs in


class Context:
    """The parsed options, where SWF is, and one lazily built client."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        # -c: the ini read once, and only its [caravand] validated (and the
        # pools' domains read as written): no pool module is imported here.
        self.ini = read_ini(args.config) if args.config else None
        self.master = self.ini.master() if self.ini else None
        base = self.master.endpoint() if self.master else swf.Endpoint()
        self.endpoint = base.with_overrides(
            endpoint_url=getattr(args, "endpoint_url", None),
            region=getattr(args, "region", None),
            profile=getattr(args, "profile", None),
        )

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
        domain = getattr(self.args, "domain", None)
        if domain:
            return domain
        # With -c, an ini whose pools all use one domain makes it the default.
        domains = self.ini.pool_domains() if self.ini else set()
        if len(domains) == 1:
            return domains.pop()
        raise UsageError("no domain: give -d/--domain")

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

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

    def find_run_id(self, workflow_id: str, asked: str) -> str:
        """The run id of the open execution ``workflow_id``, else of its newest closed one.

        ``asked`` is what the user asked for (``describe -i ID``): errors name
        it, not the list calls made to find the run.
        """
        window = {"oldestDate": datetime.datetime.now(UTC) - MAX_EXECUTION_AGE}
        for method in ("list_open_workflow_executions", "list_closed_workflow_executions"):
            try:
                infos = self.paginate(
                    method,
                    "executionInfos",
                    domain=self.domain,
                    startTimeFilter=window,
                    executionFilter={"workflowId": workflow_id},
                )
            except swf.SWFError as exc:
                message = f"{exc.message}, while looking for its run with {exc.operation}"
                raise swf.SWFError(asked, exc.code, message, exc.status) from exc
            # The emulator ignores executionFilter: filter here as well.
            infos = [i for i in infos if i["execution"]["workflowId"] == workflow_id]
            if infos:
                return max(infos, key=lambda i: i["startTimestamp"])["execution"]["runId"]
        raise swf.SWFError(
            asked,
            "UnknownResourceFault",
            f"no execution has workflow id {workflow_id!r} in domain {self.domain} "
            f"(none open, none closed in the last {MAX_EXECUTION_AGE.days} days)",
        )


def known_region(region: str | None) -> bool:
    """Whether botocore knows ``region`` for SWF in any partition (aws, aws-cn, aws-us-gov...)."""
    import boto3

    session = boto3.Session()
    return any(
        region in session.get_available_regions("swf", partition_name=partition)
        for partition in session.get_available_partitions()
    )


# -- the commands


@dataclasses.dataclass(frozen=True)
class Command:
    """One caravanctl command: its words, help, arguments and what it runs."""

    words: tuple[str, ...]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, argparse.Namespace], int]


COMMANDS: list[Command] = []


def command(*words: str, arguments: Callable[[argparse.ArgumentParser], None], help: str):
    """Register the decorated function as the command ``words``."""

    def register(run):
        COMMANDS.append(Command(tuple(words), help, arguments, run))
        return run

    return register


def domain_register_arguments(parser):
    parser.add_argument("name", nargs="?", metavar="NAME", help="the domain's name")
    parser.add_argument("-n", "--name", dest="name_flag", metavar="NAME", help="the domain's name (seed form)")
    parser.add_argument(
        "--retention-days",
        required=True,
        type=retention,
        help="days SWF keeps closed executions (0-90, or NONE)",
    )
    parser.add_argument("--description", type=limited("--description", 1024))


@command("domain", "register", arguments=domain_register_arguments, help="register a domain")
def domain_register(ctx, args):
    if args.name and args.name_flag and args.name != args.name_flag:
        raise UsageError(f"two names given: {args.name!r} and -n {args.name_flag!r}")
    name = args.name or args.name_flag
    if not name:
        raise UsageError("no domain name: give NAME or -n NAME")
    ctx.call(
        "register_domain",
        name=name,
        workflowExecutionRetentionPeriodInDays=args.retention_days,
        description=args.description,
    )
    return ctx.done(
        f"registered: {name} (retention {args.retention_days} days)",
        {"name": name, "retentionDays": args.retention_days},
    )


def domain_list_arguments(parser):
    parser.add_argument("--deprecated", action="store_true", help="list deprecated domains instead")


@command("domain", "list", arguments=domain_list_arguments, help="list the registered (or deprecated) domains")
def domain_list(ctx, args):
    status = "DEPRECATED" if args.deprecated else "REGISTERED"
    domains = ctx.paginate("list_domains", "domainInfos", registrationStatus=status)
    domains.sort(key=lambda d: d["name"])
    if ctx.json:
        output.dump_json(domains)
    elif domains:
        output.table(
            ["NAME", "STATUS", "DESCRIPTION"],
            [[d["name"], d["status"], d.get("description", "")] for d in domains],
        )
    else:
        print("no domains")
    return 0


def domain_name_arguments(parser):
    parser.add_argument("name", metavar="NAME")


domain_describe_arguments = domain_deprecate_arguments = domain_name_arguments


@command("domain", "describe", arguments=domain_describe_arguments, help="show a domain and its configuration")
def domain_describe(ctx, args):
    data = ctx.call("describe_domain", name=args.name)
    if ctx.json:
        output.dump_json({k: v for k, v in data.items() if k != "ResponseMetadata"})
        return 0
    info, config = data["domainInfo"], data["configuration"]
    output.fields(
        [
            ("Name", info["name"]),
            ("Status", info["status"]),
            ("Description", info.get("description")),
            ("ARN", info.get("arn")),
            ("Retention days", config["workflowExecutionRetentionPeriodInDays"]),
        ]
    )
    return 0


@command(
    "domain", "deprecate", arguments=domain_deprecate_arguments, help="deprecate a domain (no new executions or types)"
)
def domain_deprecate(ctx, args):
    ctx.call("deprecate_domain", name=args.name)
    return ctx.done(f"deprecated: {args.name}", {"name": args.name})


def start_arguments(parser):
    parser.add_argument("-n", "--name", required=True, type=limited("the type name", swf.MAX_NAME))
    parser.add_argument("-v", "--version", required=True, type=limited("the type version", 64))
    parser.add_argument("-i", "--id", required=True, type=identifier, help="the workflow id")
    parser.add_argument("-t", "--task-list", help="decision task list (default: the type's)")
    parser.add_argument("--input", type=payload, metavar='"<some data>"', help="raw input of the execution")
    parser.add_argument("--tag-list", type=tag_list, metavar='"tag1 tag2 ..."', help="up to 5 tags")
    parser.add_argument("--execution-timeout", type=seconds, help=f"execution start-to-close: {DURATION_HELP}")
    parser.add_argument("--task-timeout", type=seconds, help=f"decision task start-to-close: {DURATION_HELP}")
    parser.add_argument("--child-policy", choices=CHILD_POLICIES)
    parser.add_argument("--lambda-role", help="ARN of an IAM role that lets SWF invoke Lambda functions")
    parser.add_argument("--priority", type=priority, help="decision task priority (an integer)")
    parser.add_argument(
        "--wait-type",
        type=wait_seconds,
        metavar="SECONDS",
        help="if the workflow type is not registered yet (its decider is starting and registers it), "
        f"wait up to SECONDS for it: {DURATION_HELP}",
    )


def wait_for_type(ctx, name: str, version: str, seconds: int) -> None:
    """Return once the workflow type exists (DescribeWorkflowType answers), or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            ctx.call("describe_workflow_type", domain=ctx.domain, workflowType={"name": name, "version": version})
            return
        except swf.SWFError as exc:
            if exc.code != "UnknownResourceFault":
                raise
            if time.monotonic() + WAIT_TYPE_INTERVAL > deadline:
                raise swf.SWFError(
                    "StartWorkflowExecution",
                    exc.code,
                    f"workflow type {name} {version} is still unknown in {ctx.domain} after {seconds} s "
                    f"({exc.message}): start a decider that serves it (it registers the type), or wait longer",
                ) from exc
        time.sleep(WAIT_TYPE_INTERVAL)


@command("start", arguments=start_arguments, help="start a workflow execution; prints its run id")
def start(ctx, args):
    if args.wait_type:
        wait_for_type(ctx, args.name, args.version, args.wait_type)
    data = ctx.call(
        "start_workflow_execution",
        domain=ctx.domain,
        workflowId=args.id,
        workflowType={"name": args.name, "version": args.version},
        taskList={"name": args.task_list} if args.task_list else None,
        input=args.input,
        tagList=args.tag_list,
        executionStartToCloseTimeout=args.execution_timeout,
        taskStartToCloseTimeout=args.task_timeout,
        childPolicy=args.child_policy,
        lambdaRole=args.lambda_role,
        taskPriority=args.priority,
    )
    return ctx.done(data["runId"], {"workflowId": args.id, "runId": data["runId"]})


def execution_arguments(parser):
    parser.add_argument("-i", "--id", required=True, type=identifier, help="the workflow id")
    parser.add_argument("--run-id", help="a run of that id (default: the open one)")


def signal_arguments(parser):
    execution_arguments(parser)
    parser.add_argument("-s", "--signal", required=True, type=limited("the signal name", swf.MAX_NAME))
    parser.add_argument("--input", type=payload, metavar='"<some data>"', help="raw input of the signal")


@command("signal", arguments=signal_arguments, help="send a signal to a workflow execution")
def signal(ctx, args):
    ctx.call(
        "signal_workflow_execution",
        domain=ctx.domain,
        workflowId=args.id,
        runId=args.run_id,
        signalName=args.signal,
        input=args.input,
    )
    return ctx.done(f"signaled: {args.id} ({args.signal})", {"workflowId": args.id, "signal": args.signal})


def terminate_arguments(parser):
    execution_arguments(parser)
    parser.add_argument("--reason", type=limited("--reason", swf.MAX_REASON))
    parser.add_argument("--details", type=limited("--details", swf.MAX_INPUT))
    parser.add_argument("--child-policy", choices=CHILD_POLICIES)


@command("terminate", arguments=terminate_arguments, help="terminate a workflow execution at once")
def terminate(ctx, args):
    ctx.call(
        "terminate_workflow_execution",
        domain=ctx.domain,
        workflowId=args.id,
        runId=args.run_id,
        reason=args.reason,
        details=args.details,
        childPolicy=args.child_policy,
    )
    return ctx.done(f"terminated: {args.id}", {"workflowId": args.id})


cancel_arguments = execution_arguments


@command("cancel", arguments=cancel_arguments, help="ask a workflow execution to cancel itself (its decider decides)")
def cancel(ctx, args):
    ctx.call("request_cancel_workflow_execution", domain=ctx.domain, workflowId=args.id, runId=args.run_id)
    return ctx.done(f"cancel requested: {args.id}", {"workflowId": args.id})


def list_arguments(parser):
    parser.add_argument("--closed", action="store_true", help="list closed executions instead of open ones")
    parser.add_argument("--oldest", type=when, help=f"started at or after: {WHEN_HELP} (default: 1d)")
    parser.add_argument("--latest", type=when, help="started at or before (default: now)")
    parser.add_argument("-n", "--name", help="only this workflow type")
    parser.add_argument("-v", "--version", help="only this version of the type (with -n)")
    parser.add_argument("--tag", help="only executions with this tag")
    parser.add_argument("--id", help="only this workflow id")
    parser.add_argument(
        "--status", choices=CLOSE_STATUSES, type=str.upper, help="only this close status (implies --closed)"
    )


def server_filter(args, *, emulator: bool) -> dict:
    """The one filter of ``list`` that SWF applies for us (SWF takes at most one).

    The most selective one the endpoint gets right: the emulator fails on a
    typeFilter without a version and its closeStatusFilter drops the matches,
    so there those two are left to the client-side pass, which runs anyway.
    On SWF, leaving them out would page through every execution in the window.
    """
    if args.id:
        return {"executionFilter": {"workflowId": args.id}}
    if args.name and args.version:
        return {"typeFilter": {"name": args.name, "version": args.version}}
    if args.tag:
        return {"tagFilter": {"tag": args.tag}}
    if args.name and not emulator:
        return {"typeFilter": {"name": args.name}}
    if args.status and not emulator:
        return {"closeStatusFilter": {"status": args.status}}
    return {}


@command("list", arguments=list_arguments, help="list workflow executions, newest first")
def list_executions(ctx, args):
    now = datetime.datetime.now(UTC)
    oldest = args.oldest or now - datetime.timedelta(days=1)
    latest = args.latest or now
    if oldest > latest:
        raise UsageError(f"--oldest {format_time(oldest)} is after --latest {format_time(latest)}")
    if args.version and not args.name:
        raise UsageError("-v/--version needs -n/--name")
    # SWF takes at most one of these filters per call.
    chosen = [flag for flag, value in (("-n", args.name), ("--tag", args.tag), ("--id", args.id)) if value]
    if args.status:
        chosen.append("--status")
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot be used together: SWF filters by one of them")
    closed = args.closed or bool(args.status)
    infos = ctx.paginate(
        "list_closed_workflow_executions" if closed else "list_open_workflow_executions",
        "executionInfos",
        domain=ctx.domain,
        startTimeFilter={"oldestDate": oldest, "latestDate": latest},
        **server_filter(args, emulator=ctx.emulator),
    )

    # SWF applied the window and that one filter; the emulator ignores most of
    # them: check them all again (harmless on SWF).
    def wanted(info):
        return (
            oldest <= info["startTimestamp"] <= latest
            and info["executionStatus"] == ("CLOSED" if closed else "OPEN")
            and (not args.name or info["workflowType"]["name"] == args.name)
            and (not args.version or info["workflowType"]["version"] == args.version)
            and (not args.tag or args.tag in info.get("tagList", []))
            and (not args.id or info["execution"]["workflowId"] == args.id)
            and (not args.status or info.get("closeStatus") == args.status)
        )

    infos = sorted(filter(wanted, infos), key=lambda i: i["startTimestamp"], reverse=True)
    if ctx.json:
        output.dump_json(infos)
    elif infos:
        output.table(
            ["WORKFLOW ID", "RUN ID", "TYPE", "STATUS", "STARTED", "AGE"],
            [
                [
                    i["execution"]["workflowId"],
                    i["execution"]["runId"],
                    f"{i['workflowType']['name']} {i['workflowType']['version']}",
                    i.get("closeStatus", i["executionStatus"]),
                    format_time(i["startTimestamp"]),
                    format_age(i["startTimestamp"], now),
                ]
                for i in infos
            ],
        )
    else:
        print(
            f"no {'closed' if closed else 'open'} executions started from {format_time(oldest)} to {format_time(latest)}"
        )
    return 0


describe_arguments = history_arguments = execution_arguments

#: What a closed execution's last event tells: (label, attribute) for ``describe``.
CLOSE_FIELDS = {
    "WorkflowExecutionCompleted": [("Result", "result")],
    "WorkflowExecutionFailed": [("Failure reason", "reason"), ("Failure details", "details")],
    "WorkflowExecutionTerminated": [("Terminated", "cause"), ("Reason", "reason"), ("Details", "details")],
    "WorkflowExecutionCanceled": [("Details", "details")],
    "WorkflowExecutionTimedOut": [("Timed out", "timeoutType")],
    "WorkflowExecutionContinuedAsNew": [("Continued as run", "newExecutionRunId")],
}


def close_event(ctx, execution: dict) -> dict | None:
    """The event that closed ``execution`` (its last one): where SWF keeps the result or the reason."""
    data = ctx.call(
        "get_workflow_execution_history", domain=ctx.domain, execution=execution, reverseOrder=True, maximumPageSize=1
    )
    events = data.get("events") or []
    return events[0] if events and events[0]["eventType"] in CLOSE_FIELDS else None


@command(
    "describe",
    arguments=describe_arguments,
    help="show a workflow execution: status, configuration, open counts, and the result or reason once closed",
)
def describe(ctx, args):
    run_id = args.run_id or ctx.find_run_id(args.id, f"describe -i {args.id}")
    execution = {"workflowId": args.id, "runId": run_id}
    data = ctx.call("describe_workflow_execution", domain=ctx.domain, execution=execution)
    data.pop("ResponseMetadata", None)
    closed = close_event(ctx, execution) if data["executionInfo"]["executionStatus"] == "CLOSED" else None
    if ctx.json:
        output.dump_json({**data, "closeEvent": closed} if closed else data)
        return 0
    info, config, counts = data["executionInfo"], data["executionConfiguration"], data["openCounts"]
    attributes = output.attributes_of(closed) if closed else {}
    outcome = [(label, attributes.get(key)) for label, key in CLOSE_FIELDS.get(closed and closed["eventType"], [])]
    output.fields(
        [
            ("Workflow id", info["execution"]["workflowId"]),
            ("Run id", info["execution"]["runId"]),
            ("Type", f"{info['workflowType']['name']} {info['workflowType']['version']}"),
            ("Status", info.get("closeStatus", info["executionStatus"])),
            ("Started", info["startTimestamp"]),
            ("Closed", info.get("closeTimestamp")),
            *outcome,
            ("Tags", " ".join(info.get("tagList", []))),
            ("Cancel requested", "yes" if info.get("cancelRequested") else None),
            ("Task list", config["taskList"]["name"]),
            ("Execution timeout", f"{config['executionStartToCloseTimeout']} s"),
            ("Task timeout", f"{config['taskStartToCloseTimeout']} s"),
            ("Child policy", config["childPolicy"]),
            ("Lambda role", config.get("lambdaRole")),
            ("Open activities", counts.get("openActivityTasks")),
            ("Open decisions", counts.get("openDecisionTasks")),
            ("Open timers", counts.get("openTimers")),
            ("Open children", counts.get("openChildWorkflowExecutions")),
            ("Open lambdas", counts.get("openLambdaFunctions")),
            ("Last activity", data.get("latestActivityTaskTimestamp")),
            ("Context", data.get("latestExecutionContext")),
        ]
    )
    return 0


@command("history", arguments=history_arguments, help="print the whole event history of a workflow execution")
def history(ctx, args):
    run_id = args.run_id or ctx.find_run_id(args.id, f"history -i {args.id}")
    events = ctx.paginate(
        "get_workflow_execution_history",
        "events",
        domain=ctx.domain,
        execution={"workflowId": args.id, "runId": run_id},
    )
    if ctx.json:
        output.dump_json(events)
    else:
        output.events(events)
    return 0


def pending_arguments(parser):
    parser.add_argument("-t", "--task-list", required=True)
    parser.add_argument("--activity", action="store_true", help="count activity tasks (default: decision tasks)")


@command("pending", arguments=pending_arguments, help="count the tasks waiting on a task list (its backlog)")
def pending(ctx, args):
    kind = "activity" if args.activity else "decision"
    data = ctx.call(f"count_pending_{kind}_tasks", domain=ctx.domain, taskList={"name": args.task_list})
    count, truncated = data["count"], bool(data.get("truncated"))
    if ctx.json:
        output.dump_json({"taskList": args.task_list, "kind": kind, "count": count, "truncated": truncated})
    else:
        print(f"{count}{'+' if truncated else ''} pending {kind} tasks on {args.task_list}")
    return 0


def types_list_arguments(parser):
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument("--workflow", action="store_true", help="only workflow types")
    kinds.add_argument("--activity", action="store_true", help="only activity types")
    parser.add_argument("--deprecated", action="store_true", help="list deprecated types instead")


@command("types", "list", arguments=types_list_arguments, help="list the workflow and activity types of a domain")
def types_list(ctx, args):
    status = "DEPRECATED" if args.deprecated else "REGISTERED"
    found = []
    if not args.activity:
        for t in ctx.paginate("list_workflow_types", "typeInfos", domain=ctx.domain, registrationStatus=status):
            found.append(("workflow", t["workflowType"], t))
    if not args.workflow:
        for t in ctx.paginate("list_activity_types", "typeInfos", domain=ctx.domain, registrationStatus=status):
            found.append(("activity", t["activityType"], t))
    found.sort(key=lambda f: (f[0], f[1]["name"], f[1]["version"]))
    if ctx.json:
        output.dump_json([dict(info, kind=kind) for kind, _, info in found])
    elif found:
        output.table(
            ["KIND", "NAME", "VERSION", "STATUS", "DESCRIPTION"],
            [[k, t["name"], t["version"], i["status"], i.get("description", "")] for k, t, i in found],
        )
    else:
        print(f"no {status.lower()} types in {ctx.domain}")
    return 0


def local_endpoint_arguments(parser):
    parser.add_argument(
        "--port",
        type=port_number,
        help=f"loopback port (default: the ini's embedded_port, else {DEFAULT_EMBEDDED_PORT}; 0: any free port)",
    )
    parser.add_argument("--env", action="store_true", help="only print the export lines for the shell, then exit")


@command(
    "local-endpoint",
    arguments=local_endpoint_arguments,
    help="run the local SWF emulator (moto) on 127.0.0.1 until interrupted",
)
def local_endpoint(ctx, args):
    port = args.port
    if port is not None:
        change = "give --port another port (0: any free one)"
    elif ctx.master is not None:
        port = ctx.master.embedded_port
        change = f"set embedded_port in [caravand] of {args.config} to another port, or give --port"
    else:
        port = DEFAULT_EMBEDDED_PORT
        change = f"give --port another port (the default is {DEFAULT_EMBEDDED_PORT})"
    if args.env:
        print("\n".join(embedded.export_lines(f"http://{embedded.HOST}:{port}")))
        return 0

    def announce(url):
        print(f"local SWF endpoint: {url} (Ctrl-C to stop)")
        print("to use it from another shell:")
        print("\n".join(f"  {line}" for line in embedded.export_lines(url)), flush=True)

    try:
        return embedded.serve(port, verbose=getattr(args, "verbose", False), announce=announce)
    except embedded.PortUnavailable as exc:
        raise swf.ConfigError(f"{exc}: {change}") from None


# -- parsers


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


def build_parser(prog: str = "caravanctl") -> Parser:
    parser = Parser(prog=prog, description="Drive AWS SWF: domains, workflow executions, task lists.")
    parser.add_argument("--version", action="version", version=f"caravand {__version__}")
    add_common(parser, suppress=False, short_verbose=True)
    groups = {(): parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)}
    for cmd in COMMANDS:
        for depth in range(1, len(cmd.words)):
            prefix = cmd.words[:depth]
            if prefix not in groups:
                group = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = group.add_subparsers(dest=f"command{depth}", metavar="COMMAND", required=True)
        sub = groups[cmd.words[:-1]].add_parser(cmd.words[-1], help=cmd.help, description=cmd.help)
        add_common(sub, suppress=True, short_verbose=False)
        cmd.arguments(sub)
        sub.set_defaults(run=cmd.run)
    return parser


#: A command's log line on stderr (caravand's names its process too).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level(args) -> int:
    """Warnings only by default (``log_level`` in the parser's defaults says otherwise); more with --verbose."""
    quiet = getattr(args, "log_level", logging.WARNING)
    if args.debug:
        return logging.DEBUG
    if args.verbose:
        return logging.DEBUG if quiet <= logging.INFO else logging.INFO
    return quiet


def run(parser: Parser, argv: list[str] | None) -> int:
    """Parse, run, and turn every known error into one line and its exit code."""
    try:
        args = parser.parse_args(argv)
        setup_logging(level=log_level(args), fmt=LOG_FORMAT, quiet_libraries=not args.debug)
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


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


# -- the seed's commands, same flags, same behaviour


def _alias(words: tuple[str, ...], prog: str):
    def entry(argv: list[str] | None = None) -> int:
        cmd = next(c for c in COMMANDS if c.words == words)
        parser = Parser(prog=prog, description=cmd.help)
        add_common(parser, suppress=False, short_verbose=False)
        cmd.arguments(parser)
        parser.set_defaults(run=cmd.run)
        return run(parser, argv)

    entry.__name__ = prog.replace("-", "_")
    return entry


seed_start = _alias(("start",), "caravan-start")
seed_signal = _alias(("signal",), "caravan-signal")
seed_terminate = _alias(("terminate",), "caravan-terminate")
seed_list = _alias(("list",), "caravan-list")
seed_domain_register = _alias(("domain", "register"), "caravan-domain-register")
seed_domain_list = _alias(("domain", "list"), "caravan-domain-list")


if __name__ == "__main__":
    sys.exit(main())
