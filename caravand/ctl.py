"""caravanctl's commands: the operator's command line to SWF, and the seed's caravan-* aliases.

Each command is one :class:`Command` record: its arguments and the function
that runs it in a :class:`caravand.cli.Context`. ``caravanctl`` mounts them
as sub-commands; a seed alias such as ``caravan-start`` is the same record
under a parser of its own, so both accept the same flags and behave the
same. The frame (parsing, common options, exit codes, one-line errors) is
:mod:`caravand.cli`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import sys
import time
from collections.abc import Callable

from caravand import __version__, embedded, output, swf, values
from caravand.cli import Context, Parser, add_common, run
from caravand.cli import endpoint_url as cli_endpoint_url
from caravand.config import DEFAULT_EMBEDDED_PORT, MASTER_SETTINGS
from caravand.swf import UsageError
from caravand.timespec import (
    DURATION_HELP,
    UTC,
    WHEN_HELP,
    format_age,
    format_time,
    parse_duration,
    parse_when,
)

CHILD_POLICIES = ("TERMINATE", "REQUEST_CANCEL", "ABANDON")
CLOSE_STATUSES = ("COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW", "TIMED_OUT")
#: An execution can stay open for a year: look that far back to find one by id.
MAX_EXECUTION_AGE = datetime.timedelta(days=366)
#: How often ``start --wait-type`` asks whether the type is registered (SWF refills Describe* at 6/s).
WAIT_TYPE_INTERVAL = 0.5


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
    if values.is_none(value):
        return values.NONE
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


def wait_seconds(value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


identifier = limited("the workflow id", swf.MAX_NAME)
payload = limited("--input", swf.MAX_INPUT)


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


@command("domain", "describe", arguments=domain_name_arguments, help="show a domain and its configuration")
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


@command("domain", "deprecate", arguments=domain_name_arguments, help="deprecate a domain (no new executions or types)")
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


@command(
    "cancel", arguments=execution_arguments, help="ask a workflow execution to cancel itself (its decider decides)"
)
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


def find_run_id(ctx, workflow_id: str, asked: str) -> str:
    """The run id of the open execution ``workflow_id``, else of its newest closed one.

    ``asked`` is what the user asked for (``describe -i ID``): errors name
    it, not the list calls made to find the run.
    """
    window = {"oldestDate": datetime.datetime.now(UTC) - MAX_EXECUTION_AGE}
    for method in ("list_open_workflow_executions", "list_closed_workflow_executions"):
        try:
            infos = ctx.paginate(
                method,
                "executionInfos",
                domain=ctx.domain,
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
        f"no execution has workflow id {workflow_id!r} in domain {ctx.domain} "
        f"(none open, none closed in the last {MAX_EXECUTION_AGE.days} days)",
    )


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
    arguments=execution_arguments,
    help="show a workflow execution: status, configuration, open counts, and the result or reason once closed",
)
def describe(ctx, args):
    run_id = args.run_id or find_run_id(ctx, args.id, f"describe -i {args.id}")
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


@command("history", arguments=execution_arguments, help="print the whole event history of a workflow execution")
def history(ctx, args):
    run_id = args.run_id or find_run_id(ctx, args.id, f"history -i {args.id}")
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
    parser.add_argument(
        "--poll-hold",
        type=embedded.hold_seconds,
        metavar="SECONDS",
        help="hold an empty poll up to this long (default: the ini's poll_timeout, else 60, as SWF)",
    )
    parser.add_argument(
        "--state",
        metavar="PATH",
        help="keep the SWF state in this file across restarts (default: the ini's embedded_state, else none)",
    )


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
        return embedded.serve(port, verbose=args.verbose, announce=announce, **local_endpoint_keeping(ctx, args))
    except embedded.PortUnavailable as exc:
        raise swf.ConfigError(f"{exc}: {change}") from None


def local_endpoint_keeping(ctx, args) -> dict:
    """The poll hold and state file of ``local-endpoint``: its flags, else the ini's settings, else SWF's hold."""
    poll_hold, state = args.poll_hold, args.state
    if ctx.master is not None:
        if poll_hold is None:
            poll_hold = ctx.master.poll_timeout
        if state is None and ctx.master.embedded_state:
            state = os.path.join(os.path.dirname(ctx.master.path), ctx.master.embedded_state)
    return {"poll_hold": poll_hold or swf.SWF_POLL_HOLD, "state": state}


# -- status: the running master's metrics endpoint, as a table of pools

#: How long ``status`` waits for the metrics endpoint: a master that does not answer in this time is not there.
STATUS_TIMEOUT = 3.0
#: Children's states, in the order of their columns (caravand_children{state}).
CHILD_STATES = ("booting", "idle", "polling", "paging", "working")
#: Task outcomes that are no failure; every other outcome (failed, stale, error, abandoned...) is one.
NOT_FAILED = frozenset({"completed", "canceled"})
#: Where a master serves its metrics when its ini does not say (or without -c).
DEFAULT_METRICS_BIND = next(s.default for s in MASTER_SETTINGS if s.name == "metrics_bind")


def metrics_url(address: str) -> str:
    """The URL of ``/metrics`` for ``metrics_bind`` (HOST:PORT); a wildcard host is asked on loopback."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def scrape_metrics(url: str, timeout: float = STATUS_TIMEOUT) -> str:
    """The exposition text at ``url``; CaravanError (exit 1), one line, if nothing answers it as caravand would."""
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise swf.CaravanError(f"{url} answered HTTP {exc.code} {exc.reason}: not caravand's metrics") from None
    except (OSError, http.client.HTTPException, UnicodeDecodeError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise swf.CaravanError(
            f"cannot read {url} ({why}): caravand does not run there, or its metrics_bind is off or elsewhere"
        ) from None


def parse_status(text: str) -> dict[str, dict]:
    """Each pool's figures in the exposition ``text``: {pool: {"state", "target", "children", ...}}.

    A pool is known from any of the master's families. To show a new family
    (backlog, an autoscaling target), fill its key here and add a column to
    :data:`STATUS_COLUMNS`; the JSON carries every key.
    """
    from prometheus_client.parser import text_string_to_metric_families

    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise swf.CaravanError(f"the metrics endpoint's answer is no Prometheus exposition: {exc}") from None
    pools: dict[str, dict] = {}

    def pool(name: str) -> dict:
        return pools.setdefault(
            name,
            {
                "pool": name,
                "state": None,
                "target": 0,
                "children": dict.fromkeys(CHILD_STATES, 0),
                "completed": 0,
                "failed": 0,
                "restarts": 0,
                "oldest_heartbeat_age": None,
                "backlog": None,
                "min": None,
                "max": None,
            },
        )

    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if "pool" not in labels:
                continue
            into = pool(labels["pool"])
            if name == "caravand_pool_state" and value >= 1:
                into["state"] = labels.get("state")
            elif name == "caravand_pool_target_children":
                into["target"] = int(value)
            elif name == "caravand_children":
                state = labels.get("state", "?")
                into["children"][state] = into["children"].get(state, 0) + int(value)
            elif name == "caravand_tasks_total":
                outcome = labels.get("outcome")
                if outcome == "completed":
                    into["completed"] += int(value)
                elif outcome not in NOT_FAILED:
                    into["failed"] += int(value)
            elif name == "caravand_child_restarts_total":
                into["restarts"] += int(value)
            elif name == "caravand_oldest_heartbeat_age_seconds":
                into["oldest_heartbeat_age"] = value
            elif name == "caravand_pool_backlog":
                into["backlog"] = None if math.isnan(value) else int(value)
            elif name in ("caravand_pool_min_children", "caravand_pool_max_children"):
                into[name.split("_")[2]] = int(value)  # min, max
    return dict(sorted(pools.items()))


def add_rates(pools: dict[str, dict], previous: dict[str, dict] | None, seconds: float | None) -> dict[str, dict]:
    """Per second over the last interval, from two samples: completed and failed tasks (None with one sample)."""
    for name, now in pools.items():
        before = (previous or {}).get(name)
        for key in ("completed", "failed"):
            rate = None
            if before is not None and seconds:
                rate = max(0.0, (now[key] - before[key]) / seconds)  # a restarted master starts again from 0
            now[f"{key}_per_second"] = rate
    return pools


def rate_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}/s"


@dataclasses.dataclass(frozen=True)
class StatusColumn:
    """A column of ``status``'s table: its header and how a pool's figures become its cell."""

    header: str
    cell: Callable[[dict], object]


def children_column(state: str) -> StatusColumn:
    return StatusColumn(state.upper(), lambda p: p["children"].get(state, 0))


def scale_cell(pool: dict) -> str:
    """``2..16`` for a pool that autoscales, ``-`` for a fixed one (or an older master that does not say)."""
    low, high = pool["min"], pool["max"]
    return f"{low}..{high}" if low is not None and high is not None and high > low else "-"


def age_cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


STATUS_COLUMNS: list[StatusColumn] = [
    StatusColumn("POOL", lambda p: p["pool"]),
    StatusColumn("STATE", lambda p: p["state"] or "?"),
    StatusColumn("TARGET", lambda p: p["target"]),
    StatusColumn("SCALE", lambda p: scale_cell(p)),
    StatusColumn("BACKLOG", lambda p: "-" if p["backlog"] is None else p["backlog"]),
    *(children_column(state) for state in CHILD_STATES),
    StatusColumn("COMPLETED", lambda p: p["completed"]),
    StatusColumn("RATE", lambda p: rate_cell(p["completed_per_second"])),
    StatusColumn("FAILED", lambda p: p["failed"]),
    StatusColumn("FAIL RATE", lambda p: rate_cell(p["failed_per_second"])),
    StatusColumn("RESTARTS", lambda p: p["restarts"]),
    StatusColumn("HEARTBEAT", lambda p: age_cell(p["oldest_heartbeat_age"])),
]


def status_table(pools: dict[str, dict], stream=None) -> None:
    output.table(
        [c.header for c in STATUS_COLUMNS], [[str(c.cell(p)) for c in STATUS_COLUMNS] for p in pools.values()], stream
    )


def watch_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0 or number != number or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not an interval: expected seconds above 0, such as 2 or 0.5")
    return number


def status_arguments(parser):
    parser.add_argument(
        "--url",
        metavar="URL",
        type=cli_endpoint_url,
        help="the metrics endpoint (default: from metrics_bind of -c INI)",
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=watch_seconds,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C, like top",
    )


@command(
    "status",
    arguments=status_arguments,
    help="show the running caravand's pools from its metrics endpoint: states, children, tasks, restarts",
)
def status(ctx, args):
    url = args.url or status_url(ctx)
    previous, taken = None, None
    try:
        while True:
            text = scrape_metrics(url)
            now = time.monotonic()
            pools = add_rates(parse_status(text), previous, None if taken is None else now - taken)
            show_status(ctx, url, pools, None if taken is None else now - taken, watching=args.watch is not None)
            if args.watch is None:
                return 0
            previous, taken = pools, now
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def status_url(ctx) -> str:
    address = ctx.master.metrics_bind if ctx.master is not None else DEFAULT_METRICS_BIND
    if not address:
        raise swf.ConfigError(f"metrics are off in {ctx.args.config} (metrics_bind is empty): status reads them")
    return metrics_url(address)


def show_status(ctx, url: str, pools: dict[str, dict], interval: float | None, *, watching: bool) -> None:
    if ctx.json:
        data = {"url": url, "interval": interval, "pools": list(pools.values())}
        if watching:  # one line a sample, for a reader of lines
            print(output.compact_json(data), flush=True)
        else:
            output.dump_json(data)
        return
    if watching and sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[2J")  # home, clear: the table in place, like top
    if watching:
        print(f"{url}  {datetime.datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC  (Ctrl-C to quit)")
    if pools:
        status_table(pools)
    else:
        print(f"no pools at {url}")
    if watching:
        print(flush=True)


# -- caravanctl's parser


def build_parser(prog: str = "caravanctl") -> Parser:
    parser = Parser(prog=prog, description="Drive AWS SWF: domains, workflow executions, task lists.")
    parser.add_argument("--version", action="version", version=f"caravand {__version__}")
    add_common(parser, suppress=False, short_verbose=True)
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    }
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
