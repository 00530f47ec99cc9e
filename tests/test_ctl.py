"""caravanctl and the seed's caravan-* aliases, in process, on moto.mock_aws.

moto ignores or breaks most list filters, so the list tests register
executions of several types, tags and statuses and check that only the right
ones come out; which filters reach SWF itself is checked with botocore's
Stubber. ``cancel`` is not implemented by moto: it is tested with the Stubber.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from caravand import config, ctl, swf
from caravand.cli import Context
from caravand.timespec import format_time

DOMAIN = "CaravanDemo"
NOWHERE = "http://127.0.0.1:9"  # nothing listens there; never leaves loopback
REAL_SWF = "https://swf.us-east-1.amazonaws.com"  # only ever given to a Stubber's client


_shared_loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)


@pytest.fixture(autouse=True)
def shared_botocore_loader(monkeypatch):
    """Every command builds a new boto3 session, as it does for real; sharing the
    loader of botocore's JSON models makes that ~10 ms instead of ~80 ms."""
    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader)


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``caravanctl`` (or an alias entry point) in process; exit code and output."""

    def run(*argv: str, entry=ctl.main) -> Result:
        capsys.readouterr()
        code = entry(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def assert_fails(result: Result, code: int, *fragments: str, prog: str = "caravanctl") -> str:
    """The command failed with ``code`` and exactly one line on stderr."""
    assert result.code == code, result
    assert "Traceback" not in result.err
    assert result.err.endswith("\n") and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"{prog}: error: "), result.err
    for fragment in fragments:
        assert fragment in result.err
    return result.err


@pytest.fixture
def boto(fast_moto, monkeypatch):
    """In-process moto with the demo domain and a few workflow types; a plain boto3 client.

    In-process moto answers at SWF's own URL, but it is the emulator all the
    same: caravanctl must treat it as it treats a moto server on loopback.
    """
    from moto import mock_aws

    monkeypatch.setattr(Context, "emulator", True)

    with mock_aws():
        client = boto3.client("swf", region_name="us-east-1")
        client.register_domain(name=DOMAIN, workflowExecutionRetentionPeriodInDays="1")
        for name, version in (("Demo", "0.1"), ("Demo", "0.2"), ("Other", "1.0")):
            client.register_workflow_type(
                domain=DOMAIN,
                name=name,
                version=version,
                defaultTaskList={"name": "default"},
                defaultExecutionStartToCloseTimeout="600",
                defaultTaskStartToCloseTimeout="10",
                defaultChildPolicy="TERMINATE",
            )
        yield client


def start(cli, workflow_id: str, name: str = "Demo", version: str = "0.1", *extra: str) -> str:
    result = cli("-d", DOMAIN, "start", "-n", name, "-v", version, "-i", workflow_id, *extra)
    assert result.code == 0, result
    return result.out.strip()


def boto_start(boto, workflow_id: str, name: str = "Demo", version: str = "0.1", **params) -> str:
    """Start an execution directly (the fixtures' way; `start` itself is tested above)."""
    workflow_type = {"name": name, "version": version}
    return boto.start_workflow_execution(domain=DOMAIN, workflowId=workflow_id, workflowType=workflow_type, **params)[
        "runId"
    ]


def open_infos(boto) -> list[dict]:
    return boto.list_open_workflow_executions(
        domain=DOMAIN, startTimeFilter={"oldestDate": datetime.datetime(2015, 1, 1)}
    )["executionInfos"]


def closed_infos(boto) -> list[dict]:
    return boto.list_closed_workflow_executions(
        domain=DOMAIN, startTimeFilter={"oldestDate": datetime.datetime(2015, 1, 1)}
    )["executionInfos"]


def history_of(boto, workflow_id: str, run_id: str) -> list[dict]:
    return boto.get_workflow_execution_history(domain=DOMAIN, execution={"workflowId": workflow_id, "runId": run_id})[
        "events"
    ]


def listed_ids(result: Result) -> list[str]:
    """The workflow ids of a ``list`` table, in order."""
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split()[:2] == ["WORKFLOW", "ID"]
    return [line.split()[0] for line in lines[1:]]


def complete(boto, task_list: str) -> None:
    """Act as a decider: complete the execution waiting on ``task_list``."""
    task = boto.poll_for_decision_task(domain=DOMAIN, taskList={"name": task_list})
    assert task.get("taskToken")
    boto.respond_decision_task_completed(
        taskToken=task["taskToken"],
        decisions=[{"decisionType": "CompleteWorkflowExecution", "completeWorkflowExecutionDecisionAttributes": {}}],
    )


# -- domains


def test_domain_register(cli, boto):
    result = cli("domain", "register", "Orders", "--retention-days", "3", "--description", "the orders")
    assert result.code == 0 and result.err == ""
    assert result.out == "registered: Orders (retention 3 days)\n"
    described = boto.describe_domain(name="Orders")
    assert described["configuration"]["workflowExecutionRetentionPeriodInDays"] == "3"
    assert described["domainInfo"]["description"] == "the orders"


def test_domain_register_seed_form_and_alias(cli, boto):
    assert cli("domain", "register", "-n", "ByFlag", "--retention-days", "NONE").code == 0
    result = cli("-n", "ByAlias", "--retention-days", "1", entry=ctl.seed_domain_register)
    assert result.code == 0
    assert result.out == "registered: ByAlias (retention 1 days)\n"
    names = {d["name"] for d in boto.list_domains(registrationStatus="REGISTERED")["domainInfos"]}
    assert {"ByFlag", "ByAlias"} <= names
    assert boto.describe_domain(name="ByFlag")["configuration"]["workflowExecutionRetentionPeriodInDays"] == "NONE"


def test_domain_register_json(cli, boto):
    result = cli("domain", "register", "J", "--retention-days", "7", "--json")
    assert json.loads(result.out) == {"name": "J", "retentionDays": "7"}


def test_domain_register_bad_input(cli, boto):
    assert_fails(cli("domain", "register", "A", "-n", "B", "--retention-days", "1"), 2, "two names")
    assert_fails(cli("domain", "register", "--retention-days", "1"), 2, "no domain name")
    assert_fails(cli("domain", "register", "A", "--retention-days", "91"), 2, "retention")
    assert_fails(cli("domain", "register", "A"), 2, "--retention-days")
    assert_fails(
        cli("-n", "A", "--retention-days", "x", entry=ctl.seed_domain_register), 2, prog="caravan-domain-register"
    )
    names = {d["name"] for d in boto.list_domains(registrationStatus="REGISTERED")["domainInfos"]}
    assert names == {DOMAIN}


def test_domain_register_twice_is_refused(cli, boto):
    assert_fails(
        cli("domain", "register", DOMAIN, "--retention-days", "1"),
        1,
        "RegisterDomain failed: DomainAlreadyExistsFault",
    )


def test_domain_list(cli, boto):
    boto.register_domain(name="Alpha", workflowExecutionRetentionPeriodInDays="1", description="first")
    result = cli("domain", "list")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "DESCRIPTION"]
    assert lines[1].split() == ["Alpha", "REGISTERED", "first"]
    assert lines[2].split() == [DOMAIN, "REGISTERED"]
    # The seed's alias prints the same.
    assert cli(entry=ctl.seed_domain_list).out == result.out


def test_domain_list_json_and_deprecated(cli, boto):
    boto.register_domain(name="Old", workflowExecutionRetentionPeriodInDays="1")
    boto.deprecate_domain(name="Old")
    registered = json.loads(cli("domain", "list", "--json").out)
    assert [d["name"] for d in registered] == [DOMAIN]
    deprecated = json.loads(cli("domain", "list", "--deprecated", "--json").out)
    assert [(d["name"], d["status"]) for d in deprecated] == [("Old", "DEPRECATED")]


def test_domain_list_empty(cli, boto):
    boto.deprecate_domain(name=DOMAIN)
    assert cli("domain", "list").out == "no domains\n"


def test_domain_describe(cli, boto):
    result = cli("domain", "describe", DOMAIN)
    assert result.code == 0
    fields = dict(line.split(":", 1) for line in result.out.splitlines())
    assert fields["Name"].strip() == DOMAIN
    assert fields["Status"].strip() == "REGISTERED"
    assert fields["Retention days"].strip() == "1"
    data = json.loads(cli("domain", "describe", DOMAIN, "--json").out)
    assert data["domainInfo"]["name"] == DOMAIN
    assert data["configuration"]["workflowExecutionRetentionPeriodInDays"] == "1"
    assert "ResponseMetadata" not in data


def test_domain_describe_unknown(cli, boto):
    assert_fails(cli("domain", "describe", "Nope"), 1, "DescribeDomain failed: UnknownResourceFault")


def test_domain_deprecate(cli, boto):
    result = cli("domain", "deprecate", DOMAIN)
    assert result.code == 0 and result.out == f"deprecated: {DOMAIN}\n"
    assert boto.describe_domain(name=DOMAIN)["domainInfo"]["status"] == "DEPRECATED"
    assert_fails(cli("domain", "deprecate", DOMAIN), 1, "DeprecateDomain failed: DomainDeprecatedFault")


# -- start, signal, terminate, cancel


def test_start_prints_the_run_id(cli, boto):
    result = cli("-d", DOMAIN, "start", "-n", "Demo", "-v", "0.1", "-i", "1")
    assert result.code == 0 and result.err == ""
    (info,) = open_infos(boto)
    assert result.out == info["execution"]["runId"] + "\n"
    assert info["execution"]["workflowId"] == "1"
    assert info["workflowType"] == {"name": "Demo", "version": "0.1"}


def test_start_seed_alias_and_json(cli, boto):
    result = cli("-d", DOMAIN, "-n", "Demo", "-v", "0.1", "-i", "1", entry=ctl.seed_start)
    assert result.code == 0
    run_id = result.out.strip()
    result = cli("-d", DOMAIN, "start", "-n", "Other", "-v", "1.0", "-i", "2", "--json")
    data = json.loads(result.out)
    runs = {i["execution"]["workflowId"]: i["execution"]["runId"] for i in open_infos(boto)}
    assert runs == {"1": run_id, "2": data["runId"]}
    assert data["workflowId"] == "2"


def test_start_options_reach_swf(cli, boto):
    run_id = start(
        cli,
        "opts",
        "Demo",
        "0.1",
        "-t",
        "special",
        "--input",
        '{"x": 1}',
        "--tag-list",
        "red blue",
        "--execution-timeout",
        "10m",
        "--task-timeout",
        "30",
        "--child-policy",
        "ABANDON",
    )
    described = boto.describe_workflow_execution(domain=DOMAIN, execution={"workflowId": "opts", "runId": run_id})
    config = described["executionConfiguration"]
    assert config["taskList"] == {"name": "special"}
    assert config["executionStartToCloseTimeout"] == "600"
    assert config["taskStartToCloseTimeout"] == "30"
    assert config["childPolicy"] == "ABANDON"
    assert described["executionInfo"]["tagList"] == ["red", "blue"]
    started = history_of(boto, "opts", run_id)[0]["workflowExecutionStartedEventAttributes"]
    assert started["input"] == '{"x": 1}'


def test_start_sends_every_option(cli, monkeypatch):
    """The request itself, for the options moto does not keep (Stubber)."""
    client, stubber = stub_client(monkeypatch)
    stubber.add_response(
        "start_workflow_execution",
        {"runId": "run-1"},
        {
            "domain": DOMAIN,
            "workflowId": "w",
            "workflowType": {"name": "Demo", "version": "0.1"},
            "taskList": {"name": "tl"},
            "input": "in",
            "tagList": ["a", "b"],
            "executionStartToCloseTimeout": "7200",
            "taskStartToCloseTimeout": "5",
            "childPolicy": "REQUEST_CANCEL",
            "lambdaRole": "arn:aws:iam::123456789012:role/swf-lambda",
            "taskPriority": "-3",
        },
    )
    with stubber:
        result = cli(
            "-d", DOMAIN, "start", "-n", "Demo", "-v", "0.1", "-i", "w", "-t", "tl", "--input", "in",
            "--tag-list", "a b", "--execution-timeout", "2h", "--task-timeout", "5s", "--child-policy",
            "REQUEST_CANCEL", "--lambda-role", "arn:aws:iam::123456789012:role/swf-lambda", "--priority", "-3",
        )  # fmt: skip
    assert result.code == 0 and result.out == "run-1\n"
    stubber.assert_no_pending_responses()


def test_start_refusals(cli, boto):
    start(cli, "1")
    assert_fails(
        cli("-d", DOMAIN, "start", "-n", "Demo", "-v", "0.1", "-i", "1"),
        1,
        "StartWorkflowExecution failed: WorkflowExecutionAlreadyStartedFault",
    )
    assert_fails(
        cli("-d", DOMAIN, "start", "-n", "Nope", "-v", "0.1", "-i", "2"),
        1,
        "StartWorkflowExecution failed: UnknownResourceFault",
    )
    assert len(open_infos(boto)) == 1


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--execution-timeout", "soon"], "is not a duration"),
        (["--tag-list", "a b c d e f"], "at most 5"),
        (["--priority", "high"], "is not a priority"),
        (["--priority", str(2**31)], "out of range"),
        (["--child-policy", "KILL"], "invalid choice"),
        (["-i", "x" * 257], "the workflow id is 257 characters long"),
        (["--input", "x" * 32769], "--input is 32769 characters long; SWF accepts at most 32768"),
    ],
)
def test_start_bad_input(cli, boto, extra, fragment):
    argv = ["-d", DOMAIN, "start", "-n", "Demo", "-v", "0.1", "-i", "1", *extra]
    assert_fails(cli(*argv), 2, fragment)
    assert open_infos(boto) == []


def test_input_limits(cli, boto):
    run_id = start(cli, "big", "Demo", "0.1", "--input", "x" * 32768)
    assert history_of(boto, "big", run_id)[0]["workflowExecutionStartedEventAttributes"]["input"] == "x" * 32768
    assert_fails(
        cli("-d", DOMAIN, "-i", "big", "-s", "S", "--input", "y" * 32769, entry=ctl.seed_signal),
        2,
        "--input is 32769 characters long",
        prog="caravan-signal",
    )
    assert_fails(cli("-d", DOMAIN, "signal", "-i", "big", "-s", "S", "--input", "y" * 32769), 2, "32768")


def test_signal(cli, boto):
    run_id = start(cli, "1")
    result = cli("-d", DOMAIN, "signal", "-i", "1", "-s", "PRINT", "--input", "Hello World!")
    assert result.code == 0 and result.out == "signaled: 1 (PRINT)\n"
    # In-process moto insists on an input (the embedded server is mended): see the stubbed test below.
    result = cli("-d", DOMAIN, "-i", "1", "-s", "STOP", "--input", "now", entry=ctl.seed_signal)
    assert result.code == 0 and result.out == "signaled: 1 (STOP)\n"
    signals = [
        e["workflowExecutionSignaledEventAttributes"]
        for e in history_of(boto, "1", run_id)
        if e["eventType"] == "WorkflowExecutionSignaled"
    ]
    assert signals == [{"signalName": "PRINT", "input": "Hello World!"}, {"signalName": "STOP", "input": "now"}]


def test_signal_without_input_sends_none(cli, monkeypatch):
    _, stubber = stub_client(monkeypatch)
    stubber.add_response("signal_workflow_execution", {}, {"domain": DOMAIN, "workflowId": "1", "signalName": "STOP"})
    with stubber:
        result = cli("-d", DOMAIN, "-i", "1", "-s", "STOP", entry=ctl.seed_signal)
    assert result.code == 0 and result.out == "signaled: 1 (STOP)\n"
    stubber.assert_no_pending_responses()


def test_signal_with_run_id_and_json(cli, boto):
    run_id = start(cli, "1")
    result = cli("-d", DOMAIN, "signal", "-i", "1", "--run-id", run_id, "-s", "PING", "--input", "", "--json")
    assert json.loads(result.out) == {"workflowId": "1", "signal": "PING"}
    assert any(e["eventType"] == "WorkflowExecutionSignaled" for e in history_of(boto, "1", run_id))


def test_signal_unknown_execution(cli, boto):
    assert_fails(
        cli("-d", DOMAIN, "signal", "-i", "ghost", "-s", "PRINT", "--input", "x"),
        1,
        "SignalWorkflowExecution failed: UnknownResourceFault",
    )


def test_terminate(cli, boto):
    run_id = start(cli, "1")
    result = cli("-d", DOMAIN, "terminate", "-i", "1", "--reason", "r" * 256, "--details", "why not")
    assert result.code == 0 and result.out == "terminated: 1\n"
    assert open_infos(boto) == []
    (closed,) = closed_infos(boto)
    assert closed["closeStatus"] == "TERMINATED" and closed["execution"]["runId"] == run_id
    event = history_of(boto, "1", run_id)[-1]
    assert event["eventType"] == "WorkflowExecutionTerminated"
    attributes = event["workflowExecutionTerminatedEventAttributes"]
    assert attributes["reason"] == "r" * 256 and attributes["details"] == "why not"


def test_terminate_seed_alias(cli, boto):
    start(cli, "1")
    start(cli, "2")
    result = cli("-d", DOMAIN, "-i", "1", entry=ctl.seed_terminate)
    assert result.code == 0 and result.out == "terminated: 1\n"
    assert [i["execution"]["workflowId"] for i in open_infos(boto)] == ["2"]


def test_terminate_bad_input(cli, boto):
    start(cli, "1")
    assert_fails(cli("-d", DOMAIN, "terminate", "-i", "1", "--reason", "r" * 257), 2, "--reason is 257 characters")
    assert_fails(
        cli("-d", DOMAIN, "-i", "1", "--reason", "r" * 257, entry=ctl.seed_terminate),
        2,
        "SWF accepts at most 256",
        prog="caravan-terminate",
    )
    assert_fails(cli("-d", DOMAIN, "terminate", "-i", "1", "--child-policy", "NOPE"), 2, "--child-policy")
    assert len(open_infos(boto)) == 1
    assert_fails(
        cli("-d", DOMAIN, "terminate", "-i", "ghost"), 1, "TerminateWorkflowExecution failed: UnknownResourceFault"
    )


def stub_client(monkeypatch, url: str = NOWHERE, region: str = "us-east-1"):
    """A stubbed SWF client at ``url``, handed to every Context that builds one."""
    client = swf.make_client(swf.Endpoint(endpoint_url=url, region=region))
    stubber = Stubber(client)

    def make_client(endpoint, **kwargs):
        return client

    monkeypatch.setattr(swf, "make_client", make_client)
    return client, stubber


def test_cancel(cli, monkeypatch):
    _, stubber = stub_client(monkeypatch)
    stubber.add_response(
        "request_cancel_workflow_execution", {}, {"domain": DOMAIN, "workflowId": "1", "runId": "run-1"}
    )
    stubber.add_response("request_cancel_workflow_execution", {}, {"domain": DOMAIN, "workflowId": "2"})
    with stubber:
        first = cli("-d", DOMAIN, "cancel", "-i", "1", "--run-id", "run-1")
        second = cli("cancel", "-i", "2", "-d", DOMAIN, "--json")
    stubber.assert_no_pending_responses()
    assert first.code == 0 and first.out == "cancel requested: 1\n"
    assert second.code == 0 and json.loads(second.out) == {"workflowId": "2"}


def test_cancel_refused(cli, monkeypatch):
    _, stubber = stub_client(monkeypatch)
    stubber.add_client_error(
        "request_cancel_workflow_execution",
        service_error_code="UnknownResourceFault",
        service_message="Unknown execution: WorkflowExecution=[workflowId=9, runId=None]",
        expected_params={"domain": DOMAIN, "workflowId": "9"},
    )
    with stubber:
        result = cli("-d", DOMAIN, "cancel", "-i", "9")
    assert_fails(result, 1, "RequestCancelWorkflowExecution failed: UnknownResourceFault: Unknown execution")


# -- list


@pytest.fixture
def executions(boto):
    """Five executions: three open, two closed (one terminated, one completed)."""
    boto_start(boto, "red-1", "Demo", "0.1", tagList=["red"])
    boto_start(boto, "blue-2", "Demo", "0.2", tagList=["blue"], taskList={"name": "blue-tl"})
    boto_start(boto, "green-3", "Other", "1.0", tagList=["red", "green"])
    boto_start(boto, "done-4", "Demo", "0.1", tagList=["red"], taskList={"name": "done-tl"})
    boto_start(boto, "killed-5", "Other", "1.0", tagList=["blue"])
    complete(boto, "done-tl")
    boto.terminate_workflow_execution(domain=DOMAIN, workflowId="killed-5")
    return boto


def test_list_newest_first(cli, executions):
    result = cli("-d", DOMAIN, "list")
    assert listed_ids(result) == ["green-3", "blue-2", "red-1"]
    header, *rows = result.out.splitlines()
    assert header.split() == ["WORKFLOW", "ID", "RUN", "ID", "TYPE", "STATUS", "STARTED", "AGE"]
    info = next(i for i in open_infos(executions) if i["execution"]["workflowId"] == "green-3")
    started = format_time(info["startTimestamp"])
    assert rows[0].split()[:7] == ["green-3", info["execution"]["runId"], "Other", "1.0", "OPEN", *started.split()]


def test_list_closed(cli, executions):
    result = cli("-d", DOMAIN, "list", "--closed")
    assert listed_ids(result) == ["killed-5", "done-4"]
    statuses = [line.split()[4] for line in result.out.splitlines()[1:]]
    assert statuses == ["TERMINATED", "COMPLETED"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["-n", "Demo"], ["blue-2", "red-1"]),
        (["-n", "Demo", "-v", "0.2"], ["blue-2"]),
        (["-n", "Demo", "-v", "9.9"], []),
        (["-n", "Other"], ["green-3"]),
        (["--tag", "red"], ["green-3", "red-1"]),
        (["--tag", "green"], ["green-3"]),
        (["--id", "blue-2"], ["blue-2"]),
        (["--id", "done-4"], []),
        (["--closed", "-n", "Demo"], ["done-4"]),
        (["--closed", "--tag", "blue"], ["killed-5"]),
        (["--closed", "--id", "done-4"], ["done-4"]),
        (["--status", "TERMINATED"], ["killed-5"]),
        (["--status", "completed"], ["done-4"]),
        (["--closed", "--status", "COMPLETED"], ["done-4"]),
        (["--status", "FAILED"], []),
    ],
)
def test_list_filters_client_side(cli, executions, argv, expected):
    result = cli("-d", DOMAIN, "list", "--json", *argv)
    assert result.code == 0, result
    assert [i["execution"]["workflowId"] for i in json.loads(result.out)] == expected


def test_list_json(cli, executions):
    infos = json.loads(cli("-d", DOMAIN, "list", "--closed", "--json").out)
    assert [i["closeStatus"] for i in infos] == ["TERMINATED", "COMPLETED"]
    # Timestamps come out as ISO 8601 strings.
    started = datetime.datetime.fromisoformat(infos[0]["startTimestamp"])
    assert abs(started - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=5)


def test_list_seed_alias(cli, executions):
    result = cli("-d", DOMAIN, "--oldest", "2015-01-01", entry=ctl.seed_list)
    assert listed_ids(result) == ["green-3", "blue-2", "red-1"]
    result = cli("-d", DOMAIN, "-n", "Demo", "-v", "0.1", entry=ctl.seed_list)
    assert listed_ids(result) == ["red-1"]


def test_list_nothing(cli, boto):
    result = cli("-d", DOMAIN, "list")
    assert result.code == 0
    assert result.out.startswith("no open executions started from ")
    assert cli("-d", DOMAIN, "list", "--closed").out.startswith("no closed executions")
    assert json.loads(cli("-d", DOMAIN, "list", "--json").out) == []


@pytest.fixture
def old_and_new(boto, monkeypatch):
    """'old' started three days ago, 'new' just now."""
    import moto.swf.models.workflow_execution as wfe

    real = wfe.unix_time
    monkeypatch.setattr(wfe, "unix_time", lambda: real() - 3 * 86400)
    boto_start(boto, "old", executionStartToCloseTimeout=str(30 * 86400))
    monkeypatch.setattr(wfe, "unix_time", real)
    boto_start(boto, "new")
    return boto


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["new"]),  # the default window is the last day, as in the seed
        (["--oldest", "2015-01-01"], ["new", "old"]),
        (["--oldest", "4d"], ["new", "old"]),
        (["--oldest", "2d"], ["new"]),
        (["--oldest", "4d", "--latest", "2d"], ["old"]),
        (["--oldest", "1w", "--latest", "1h"], ["old"]),
        (["--oldest", "2015-01-01", "--latest", "2015-12-31T23:59:59+00:00"], []),
    ],
)
def test_list_time_window(cli, old_and_new, argv, expected):
    result = cli("-d", DOMAIN, "list", "--json", *argv)
    assert result.code == 0, result
    assert [i["execution"]["workflowId"] for i in json.loads(result.out)] == expected


def test_list_shows_the_age(cli, old_and_new):
    result = cli("-d", DOMAIN, "list", "--oldest", "1w")
    ages = {line.split()[0]: line.split()[-1] for line in result.out.splitlines()[1:]}
    assert ages["old"] == "3d"
    assert ages["new"].endswith("s")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--oldest", "yesterday"], ["--oldest", "'yesterday' is not a time"]),
        (["--latest", "2015-02-30"], ["--latest", "is not a time"]),
        (["--oldest", "2099-01-01"], ["--oldest 2099-01-01 00:00:00Z is after --latest"]),
        (["--oldest", "1d", "--latest", "2d"], ["is after --latest"]),
        (["-n", "Demo", "--tag", "red"], ["-n and --tag cannot be used together"]),
        (["--tag", "red", "--id", "x"], ["--tag and --id cannot be used together"]),
        (["-n", "Demo", "--id", "x"], ["cannot be used together"]),
        (["--tag", "red", "--status", "COMPLETED"], ["--tag and --status cannot be used together"]),
        (["-v", "0.1"], ["-v/--version needs -n/--name"]),
        (["--status", "DONE"], ["invalid choice"]),
    ],
)
def test_list_bad_input(cli, boto, argv, fragments):
    assert_fails(cli("-d", DOMAIN, "list", *argv), 2, *fragments)


def test_list_seed_alias_bad_input(cli, boto):
    assert_fails(cli("-d", DOMAIN, "--oldest", "someday", entry=ctl.seed_list), 2, "is not a time", prog="caravan-list")
    assert_fails(cli("-d", DOMAIN, "-n", "X", "--tag", "Y", entry=ctl.seed_list), 2, prog="caravan-list")


# The time window the Stubber expects in every list request, and the flags that ask for it.
WINDOW = (
    datetime.datetime(2015, 1, 1, tzinfo=datetime.timezone.utc),
    datetime.datetime(2015, 1, 2, tzinfo=datetime.timezone.utc),
)
WINDOW_ARGV = ("--oldest", "2015-01-01", "--latest", "2015-01-02")


def stub_infos() -> list[dict]:
    """What an endpoint that ignores every filter returns: all kinds, in one window."""

    def info(workflow_id, name, version, status, tags=()):
        return {
            "execution": {"workflowId": workflow_id, "runId": f"run-{workflow_id}"},
            "workflowType": {"name": name, "version": version},
            "startTimestamp": WINDOW[0] + datetime.timedelta(hours=len(workflow_id)),
            "executionStatus": "CLOSED",
            "closeStatus": status,
            "tagList": list(tags),
        }

    return [
        info("d", "Demo", "0.1", "COMPLETED", ["red"]),
        info("dd", "Demo", "0.2", "TERMINATED"),
        info("ooo", "Other", "1.0", "TERMINATED", ["red"]),
    ]


def expect_list(stubber, sent: dict, infos: list[dict]) -> None:
    """Two pages of ListClosedWorkflowExecutions, each asked with exactly ``sent``."""
    params = {"domain": DOMAIN, "startTimeFilter": {"oldestDate": WINDOW[0], "latestDate": WINDOW[1]}, **sent}
    stubber.add_response(
        "list_closed_workflow_executions", {"executionInfos": infos[:1], "nextPageToken": "p2"}, params
    )
    stubber.add_response(
        "list_closed_workflow_executions", {"executionInfos": infos[1:]}, {**params, "nextPageToken": "p2"}
    )


def stubbed_list_ids(cli, monkeypatch, url, argv, sent) -> list[str]:
    """``list --json ARGV`` against ``url`` (stubbed): each page must send exactly ``sent``; the ids listed."""
    _, stubber = stub_client(monkeypatch, url)
    expect_list(stubber, sent, stub_infos())
    with stubber:
        result = cli("-d", DOMAIN, "list", "--json", *WINDOW_ARGV, *argv)
    stubber.assert_no_pending_responses()
    assert result.code == 0, result
    return [i["execution"]["workflowId"] for i in json.loads(result.out)]


@pytest.mark.parametrize(
    "argv, sent, expected",
    [
        # The two SWF filters that used to be client-side only, paging through every execution.
        (["--status", "TERMINATED"], {"closeStatusFilter": {"status": "TERMINATED"}}, ["ooo", "dd"]),
        (["--closed", "-n", "Demo"], {"typeFilter": {"name": "Demo"}}, ["dd", "d"]),
        (["--closed", "-n", "Demo", "-v", "0.2"], {"typeFilter": {"name": "Demo", "version": "0.2"}}, ["dd"]),
        (["--closed", "--tag", "red"], {"tagFilter": {"tag": "red"}}, ["ooo", "d"]),
        (["--closed", "--id", "dd"], {"executionFilter": {"workflowId": "dd"}}, ["dd"]),
        (["--closed"], {}, ["ooo", "dd", "d"]),
    ],
)
def test_list_sends_its_filter_to_swf(cli, monkeypatch, argv, sent, expected):
    """On real SWF the filter goes in the request (one at most, as SWF wants) with
    the time window, on every page; the client-side pass stays (harmless)."""
    assert stubbed_list_ids(cli, monkeypatch, REAL_SWF, argv, sent) == expected


def test_list_sends_a_name_alone_to_swf_for_open_executions(cli, monkeypatch):
    _, stubber = stub_client(monkeypatch, REAL_SWF)
    window = {"oldestDate": WINDOW[0], "latestDate": WINDOW[1]}
    sent = {"domain": DOMAIN, "startTimeFilter": window, "typeFilter": {"name": "Demo"}}
    stubber.add_response("list_open_workflow_executions", {"executionInfos": []}, sent)
    with stubber:
        result = cli("-d", DOMAIN, "list", *WINDOW_ARGV, "-n", "Demo")
    stubber.assert_no_pending_responses()
    assert result.code == 0 and result.out.startswith("no open executions"), result


@pytest.mark.parametrize("url", [NOWHERE, "http://localhost:4599", "http://[::1]:4599", "http://127.0.0.2:4599/"])
@pytest.mark.parametrize(
    "argv, sent, expected",
    [
        (["--status", "TERMINATED"], {}, ["ooo", "dd"]),
        (["--closed", "-n", "Demo"], {}, ["dd", "d"]),
        (["--closed", "-n", "Demo", "-v", "0.2"], {"typeFilter": {"name": "Demo", "version": "0.2"}}, ["dd"]),
        (["--closed", "--tag", "red"], {"tagFilter": {"tag": "red"}}, ["ooo", "d"]),
    ],
)
def test_list_on_loopback_filters_on_the_client(cli, monkeypatch, url, argv, sent, expected):
    """A loopback endpoint is moto's emulator: it fails on a typeFilter without a
    version and its closeStatusFilter drops the matches, so neither is sent."""
    assert stubbed_list_ids(cli, monkeypatch, url, argv, sent) == expected


def test_list_on_the_embedded_endpoint_filters_on_the_client(cli, monkeypatch, tmp_path):
    """``endpoint_url = embedded`` is the emulator, whatever URL the client has."""
    ini = tmp_path / "caravan.ini"
    ini.write_text("[caravand]\nendpoint_url = embedded\n")
    _, stubber = stub_client(monkeypatch, REAL_SWF)
    expect_list(stubber, {}, stub_infos())
    with stubber:
        result = cli("-c", str(ini), "-d", DOMAIN, "list", "--json", *WINDOW_ARGV, "--status", "TERMINATED")
    stubber.assert_no_pending_responses()
    assert result.code == 0, result
    assert [i["execution"]["workflowId"] for i in json.loads(result.out)] == ["ooo", "dd"]


@pytest.mark.parametrize(
    "url, loopback",
    [
        ("http://127.0.0.1:4599", True),
        ("http://localhost:4599", True),
        ("http://LOCALHOST", True),
        ("http://[::1]:4599/", True),
        (REAL_SWF, False),
        ("https://swf-fips.us-gov-west-1.amazonaws.com", False),
        ("http://10.0.0.5:4599", False),
        ("http://localhost.example.com", False),
        (None, False),
    ],
)
def test_is_loopback(url, loopback):
    assert config.is_loopback(url) is loopback


# -- describe, history, pending, types


@pytest.fixture
def two_runs(boto):
    """Workflow id 'w' ran twice: the first run terminated, the second is open."""
    first = boto_start(boto, "w")
    boto.signal_workflow_execution(domain=DOMAIN, workflowId="w", signalName="FIRST", input="one")
    boto.terminate_workflow_execution(domain=DOMAIN, workflowId="w", runId=first)
    second = boto_start(boto, "w", "Other", "1.0", tagList=["t1", "t2"])
    return first, second


def test_describe_the_open_run(cli, two_runs):
    _, second = two_runs
    result = cli("-d", DOMAIN, "describe", "-i", "w")
    assert result.code == 0, result
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in result.out.splitlines())}
    assert fields["Workflow id"] == "w"
    assert fields["Run id"] == second
    assert fields["Type"] == "Other 1.0"
    assert fields["Status"] == "OPEN"
    assert fields["Tags"] == "t1 t2"
    assert fields["Task list"] == "default"
    assert fields["Execution timeout"] == "600 s"
    assert fields["Child policy"] == "TERMINATE"


def test_describe_with_run_id(cli, two_runs):
    first, _ = two_runs
    result = cli("-d", DOMAIN, "describe", "-i", "w", "--run-id", first)
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in result.out.splitlines())}
    assert fields["Run id"] == first
    assert fields["Type"] == "Demo 0.1"
    assert fields["Status"] == "TERMINATED"
    data = json.loads(cli("-d", DOMAIN, "describe", "-i", "w", "--run-id", first, "--json").out)
    assert data["executionInfo"]["execution"] == {"workflowId": "w", "runId": first}
    assert data["executionInfo"]["closeStatus"] == "TERMINATED"
    assert "ResponseMetadata" not in data


def test_describe_finds_the_newest_closed_run(cli, boto):
    first = start(cli, "w")
    boto.terminate_workflow_execution(domain=DOMAIN, workflowId="w")
    second = start(cli, "w")
    boto.terminate_workflow_execution(domain=DOMAIN, workflowId="w")
    data = json.loads(cli("-d", DOMAIN, "describe", "-i", "w", "--json").out)
    assert data["executionInfo"]["execution"]["runId"] == second != first


def test_describe_unknown(cli, boto):
    assert_fails(cli("-d", DOMAIN, "describe", "-i", "ghost"), 1, "UnknownResourceFault", "'ghost'")
    assert_fails(
        cli("-d", DOMAIN, "describe", "-i", "ghost", "--run-id", "r"),
        1,
        "DescribeWorkflowExecution failed: UnknownResourceFault",
    )


def history_rows(result: Result) -> list[tuple[int, str, dict]]:
    """The rows of a ``history`` table: (event id, type, attributes parsed back from their JSON)."""
    assert result.code == 0, result
    header, *lines = result.out.splitlines()
    assert header.split() == ["ID", "TIME", "TYPE", "ATTRIBUTES"]
    rows = []
    for line in lines:
        event_id, _date, _time, event_type, attributes = line.split(None, 4)
        rows.append((int(event_id), event_type, json.loads(attributes)))
    return rows


def test_history(cli, two_runs):
    """A table whose attributes are JSON (never Python reprs), one event a line."""
    first, second = two_runs
    result = cli("-d", DOMAIN, "history", "-i", "w")
    rows = history_rows(result)
    assert [(i, t) for i, t, _ in rows[:2]] == [(1, "WorkflowExecutionStarted"), (2, "DecisionTaskScheduled")]
    assert "WorkflowExecutionTerminated" not in result.out
    assert rows[0][2]["workflowType"] == {"name": "Other", "version": "1.0"}
    assert "'name'" not in result.out  # no Python repr

    result = cli("-d", DOMAIN, "history", "-i", "w", "--run-id", first)
    rows = history_rows(result)
    types = [t for _, t, _ in rows]
    assert types[0] == "WorkflowExecutionStarted"
    assert types[-1] == "WorkflowExecutionTerminated"
    assert ("WorkflowExecutionSignaled", {"input": "one", "signalName": "FIRST"}) in [(t, a) for _, t, a in rows]
    assert '{"input": "one", "signalName": "FIRST"}' in result.out


def test_history_json(cli, two_runs):
    first, _ = two_runs
    events = json.loads(cli("-d", DOMAIN, "history", "-i", "w", "--run-id", first, "--json").out)
    signaled = [e for e in events if e["eventType"] == "WorkflowExecutionSignaled"]
    assert signaled[0]["workflowExecutionSignaledEventAttributes"] == {"input": "one", "signalName": "FIRST"}
    assert [e["eventId"] for e in events] == list(range(1, len(events) + 1))


def test_history_unknown(cli, boto):
    assert_fails(cli("-d", DOMAIN, "history", "-i", "ghost"), 1, "UnknownResourceFault")


def test_pending(cli, boto):
    start(cli, "a", "Demo", "0.1", "-t", "decisions")
    start(cli, "b", "Demo", "0.1", "-t", "decisions")
    result = cli("-d", DOMAIN, "pending", "-t", "decisions")
    assert result.code == 0 and result.out == "2 pending decision tasks on decisions\n"
    assert cli("-d", DOMAIN, "pending", "-t", "elsewhere").out == "0 pending decision tasks on elsewhere\n"

    boto.register_activity_type(
        domain=DOMAIN,
        name="Greet",
        version="1",
        defaultTaskList={"name": "work"},
        defaultTaskStartToCloseTimeout="60",
        defaultTaskScheduleToStartTimeout="60",
        defaultTaskScheduleToCloseTimeout="120",
        defaultTaskHeartbeatTimeout="60",
    )
    task = boto.poll_for_decision_task(domain=DOMAIN, taskList={"name": "decisions"})
    boto.respond_decision_task_completed(
        taskToken=task["taskToken"],
        decisions=[
            {
                "decisionType": "ScheduleActivityTask",
                "scheduleActivityTaskDecisionAttributes": {
                    "activityType": {"name": "Greet", "version": "1"},
                    "activityId": "greet-1",
                },
            }
        ],
    )
    data = json.loads(cli("-d", DOMAIN, "pending", "--activity", "-t", "work", "--json").out)
    assert data == {"taskList": "work", "kind": "activity", "count": 1, "truncated": False}


def test_pending_needs_a_task_list_and_a_domain(cli, boto):
    assert_fails(cli("-d", DOMAIN, "pending"), 2, "-t/--task-list")
    assert_fails(cli("pending", "-t", "x"), 2, "no domain")


def test_types_list(cli, boto):
    boto.register_activity_type(domain=DOMAIN, name="Greet", version="1", description="says hello")
    result = cli("-d", DOMAIN, "types", "list")
    assert result.code == 0
    rows = [line.split() for line in result.out.splitlines()]
    assert rows == [
        ["KIND", "NAME", "VERSION", "STATUS", "DESCRIPTION"],
        ["activity", "Greet", "1", "REGISTERED", "says", "hello"],
        ["workflow", "Demo", "0.1", "REGISTERED"],
        ["workflow", "Demo", "0.2", "REGISTERED"],
        ["workflow", "Other", "1.0", "REGISTERED"],
    ]
    workflows = json.loads(cli("-d", DOMAIN, "types", "list", "--workflow", "--json").out)
    assert [(t["kind"], t["workflowType"]["name"]) for t in workflows] == [
        ("workflow", "Demo"),
        ("workflow", "Demo"),
        ("workflow", "Other"),
    ]
    activities = json.loads(cli("-d", DOMAIN, "types", "list", "--activity", "--json").out)
    assert [(t["kind"], t["activityType"]["name"]) for t in activities] == [("activity", "Greet")]
    assert_fails(cli("-d", DOMAIN, "types", "list", "--activity", "--workflow"), 2, "not allowed with")


def test_types_list_deprecated(cli, boto):
    boto.deprecate_workflow_type(domain=DOMAIN, workflowType={"name": "Demo", "version": "0.1"})
    rows = [line.split()[:3] for line in cli("-d", DOMAIN, "types", "list", "--deprecated").out.splitlines()[1:]]
    assert rows == [["workflow", "Demo", "0.1"]]
    assert cli("-d", "Empty", "types", "list").code == 1
    boto.register_domain(name="Empty", workflowExecutionRetentionPeriodInDays="1")
    assert cli("-d", "Empty", "types", "list").out == "no registered types in Empty\n"


# -- global options and errors that apply to every command


def test_global_options_before_or_after_the_command(cli, boto):
    start(cli, "1")
    before = cli("-d", DOMAIN, "--json", "list")
    after = cli("list", "-d", DOMAIN, "--json")
    assert before.code == after.code == 0
    assert json.loads(before.out) == json.loads(after.out) != []
    # -v before the command is --verbose; after `start` it is the version.
    assert cli("-v", "-d", DOMAIN, "start", "-n", "Demo", "-v", "0.2", "-i", "2").code == 0
    assert {i["workflowType"]["version"] for i in open_infos(boto)} == {"0.1", "0.2"}


def test_region_override_is_used(cli, boto):
    # The demo domain lives in us-east-1 only.
    assert_fails(cli("--region", "eu-west-1", "-d", DOMAIN, "list"), 1, "UnknownResourceFault")


def test_config_file_region_and_flag_override(cli, boto, tmp_path):
    ini = tmp_path / "caravan.ini"
    ini.write_text("[DEFAULT]\nregion = eu-west-1\n\n[caravand]\n")
    assert_fails(cli("-c", str(ini), "-d", DOMAIN, "list"), 1, "Unknown domain")
    assert cli("-c", str(ini), "--region", "us-east-1", "-d", DOMAIN, "list").code == 0


def test_unknown_domain(cli, boto):
    err = assert_fails(cli("-d", "Nope", "list"), 1, "ListOpenWorkflowExecutions failed: UnknownResourceFault")
    assert "Nope" in err
    assert_fails(
        cli("-d", "Nope", entry=ctl.seed_list), 1, "ListOpenWorkflowExecutions failed: UnknownResourceFault",
        prog="caravan-list",
    )  # fmt: skip
    assert_fails(cli("-d", "Nope", "start", "-n", "Demo", "-v", "0.1", "-i", "1"), 1, "UnknownResourceFault")


def test_missing_credentials(cli, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    err = assert_fails(cli("--endpoint-url", NOWHERE, "-d", DOMAIN, "list"), 78, "AWS_ACCESS_KEY_ID")
    assert "ListOpenWorkflowExecutions" in err and "no AWS credentials" in err
    assert_fails(
        cli("--endpoint-url", NOWHERE, entry=ctl.seed_domain_list), 78, "AWS_ACCESS_KEY_ID", prog="caravan-domain-list"
    )


def test_missing_region(cli, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert_fails(cli("--endpoint-url", NOWHERE, "domain", "list"), 78, "no AWS region", "--region")


def test_bad_profile(cli):
    assert_fails(cli("--profile", "nobody", "domain", "list"), 78, "nobody")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("endpoint_url = x\n[caravand]\n", "malformed ini"),
        ("[caravand]\nnot an assignment\n", "malformed ini"),
        ("[caravand]\nembeded_port = 1\n", "[caravand] embeded_port: unknown key"),
        ("[caravand]\nembedded_port = big\n", "[caravand] embedded_port = 'big'"),
        ("[app:main]\n", "no [caravand] section"),
    ],
)
def test_bad_config_file(cli, tmp_path, text, fragment):
    ini = tmp_path / "caravan.ini"
    ini.write_text(text)
    err = assert_fails(cli("-c", str(ini), "domain", "list"), 78, fragment)
    assert str(ini) in err
    assert_fails(cli("-c", str(ini), "-d", DOMAIN, entry=ctl.seed_list), 78, str(ini), prog="caravan-list")


def test_missing_config_file(cli, tmp_path):
    assert_fails(cli("-c", str(tmp_path / "none.ini"), "domain", "list"), 78, "no such config file")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["domain"], "required: COMMAND"),
        (["domain", "frob"], "invalid choice: 'frob'"),
        (["types"], "required"),
        (["start", "-n", "Demo", "-v", "0.1"], "the following arguments are required: -i/--id"),
        (["signal", "-i", "1"], "-s/--signal"),
        (["list", "--bogus"], "unrecognized arguments: --bogus"),
        (["--json", "-d"], "expected one argument"),
    ],
)
def test_usage_errors(cli, argv, fragment):
    assert_fails(cli(*argv), 2, fragment)


def test_no_domain(cli):
    assert_fails(cli("list"), 2, "no domain: give -d/--domain")
    assert_fails(cli("-i", "1", entry=ctl.seed_terminate), 2, "no domain", prog="caravan-terminate")


def test_seed_aliases_take_only_their_flags(cli):
    assert_fails(cli("-d", DOMAIN, "-i", "1", entry=ctl.seed_start), 2, "-n/--name", prog="caravan-start")
    assert_fails(cli("--closed", "extra", entry=ctl.seed_list), 2, "unrecognized arguments", prog="caravan-list")
    assert_fails(cli("-d", DOMAIN, "-i", "1", "--signal", "S", entry=ctl.seed_terminate), 2, prog="caravan-terminate")


def test_local_endpoint_env(cli, tmp_path):
    result = cli("local-endpoint", "--env", "--port", "4611")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "export AWS_ENDPOINT_URL_SWF=http://127.0.0.1:4611"
    assert all(line.startswith("export ") for line in lines)
    assert any(line.startswith("export AWS_ACCESS_KEY_ID=") for line in lines)
    ini = tmp_path / "caravan.ini"
    ini.write_text("[caravand]\nendpoint_url = embedded\nembedded_port = 4622\n")
    assert cli("-c", str(ini), "local-endpoint", "--env").out.splitlines()[0].endswith("http://127.0.0.1:4622")
    assert cli("local-endpoint", "--env").out.splitlines()[0].endswith("http://127.0.0.1:4599")


# -- issue 8: no traceback, the documented exit code, a message that says what to do


@pytest.mark.parametrize(
    "argv, fragments",
    [
        # Each was a traceback (OverflowError, ValueError, OverflowError).
        (["-d", DOMAIN, "list", "--oldest", "99999999d"], ["--oldest", "'99999999d' is too far back"]),
        (["--endpoint-url", "not-a-url", "domain", "list"], ["'not-a-url' is not an endpoint URL", "http(s)://"]),
        (["domain", "list", "--endpoint-url", "http://127.0.0.1:99999"], ["is not an endpoint URL"]),
        (["local-endpoint", "--port", "99999"], ["'99999' is not a port: expected 0 to 65535"]),
        (["local-endpoint", "--port", "-1"], ["is not a port"]),
    ],
)
def test_bad_values_are_usage_errors(cli, argv, fragments):
    assert_fails(cli(*argv), 2, *fragments)


def test_partial_credentials_are_a_config_error(cli, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    err = assert_fails(cli("--endpoint-url", NOWHERE, "domain", "list"), 78, "AWS_SECRET_ACCESS_KEY")
    assert "incomplete AWS credentials" in err


@pytest.mark.parametrize("oldest", ["-2d", "-48h"])
def test_list_oldest_takes_a_negative_age(cli, old_and_new, oldest):
    """`--oldest -1d` was `expected one argument` (argparse took -1d for an option): it means 1d ago."""
    result = cli("-d", DOMAIN, "list", "--json", "--oldest", oldest)
    assert result.code == 0, result
    assert [i["execution"]["workflowId"] for i in json.loads(result.out)] == ["new"]
    result = cli("-d", DOMAIN, "--oldest", "-4d", "--latest", "-2d", "--json", entry=ctl.seed_list)
    assert [i["execution"]["workflowId"] for i in json.loads(result.out)] == ["old"]


def test_history_of_an_unknown_id_names_what_was_asked(cli, boto):
    err = assert_fails(cli("-d", DOMAIN, "history", "-i", "nope"), 1, "history -i nope failed: UnknownResourceFault")
    assert "no execution has workflow id 'nope' in domain CaravanDemo" in err
    assert "DescribeWorkflowExecution" not in err
    assert_fails(cli("-d", DOMAIN, "describe", "-i", "nope"), 1, "describe -i nope failed:")


def test_describe_names_what_was_asked_when_the_run_lookup_fails(cli, monkeypatch):
    _, stubber = stub_client(monkeypatch, REAL_SWF)
    stubber.add_client_error(
        "list_open_workflow_executions", service_error_code="AccessDeniedException", service_message="not you"
    )
    with stubber:
        err = assert_fails(cli("-d", DOMAIN, "describe", "-i", "w1"), 1)
    assert err.startswith("caravanctl: error: describe -i w1 failed: AccessDeniedException: not you")
    assert "while looking for its run with ListOpenWorkflowExecutions" in err


@pytest.fixture
def no_backoff(monkeypatch):
    """Retries of a bounded call without their pauses."""
    monkeypatch.setattr(swf, "BOUNDED_BACKOFF_BASE", 0.0)


def stub_http_500(stubber, method: str, times: int = swf.CALL_MAX_ATTEMPTS) -> None:
    """The emulator's answer to what it lacks: HTTP 500 and a page of HTML (retried, as any 5xx)."""
    for _ in range(times):
        stubber.add_client_error(
            method,
            service_error_code="500",
            service_message="<!doctype html><title>500 Internal Server Error</title><h1>Internal Server Error</h1>",
            http_status_code=500,
        )


def test_the_emulators_http_500_says_what_it_lacks(cli, monkeypatch, no_backoff):
    _, stubber = stub_client(monkeypatch, "http://127.0.0.1:4599")
    stub_http_500(stubber, "request_cancel_workflow_execution")
    with stubber:
        err = assert_fails(cli("-d", DOMAIN, "cancel", "-i", "1"), 1, "RequestCancelWorkflowExecution failed")
    assert "the local SWF endpoint (moto's emulator) does not implement RequestCancelWorkflowExecution" in err
    assert "<" not in err and "Internal Server Error" not in err


def test_the_emulators_http_500_for_an_unknown_region(cli, monkeypatch, no_backoff):
    _, stubber = stub_client(monkeypatch, "http://127.0.0.1:4599", region="bogus-1")
    stub_http_500(stubber, "list_domains")
    with stubber:
        err = assert_fails(cli("--region", "bogus-1", "domain", "list"), 1, "ListDomains failed")
    assert "the local SWF endpoint knows no region 'bogus-1'" in err and "us-east-1" in err


def test_real_swfs_http_500_is_left_as_it_is(cli, monkeypatch, no_backoff):
    _, stubber = stub_client(monkeypatch, REAL_SWF)
    stub_http_500(stubber, "list_domains")
    with stubber:
        err = assert_fails(cli("domain", "list"), 1, "ListDomains failed: 500")
    assert "emulator" not in err
    assert "gave up after 3 attempts" in err


def complete_with(boto, task_list: str, decision_type: str, **attributes) -> None:
    """Act as a decider: close the execution waiting on ``task_list`` with ``decision_type``."""
    task = boto.poll_for_decision_task(domain=DOMAIN, taskList={"name": task_list})
    key = decision_type[0].lower() + decision_type[1:] + "DecisionAttributes"
    boto.respond_decision_task_completed(
        taskToken=task["taskToken"], decisions=[{"decisionType": decision_type, key: attributes}]
    )


def describe_fields(result: Result) -> dict[str, str]:
    assert result.code == 0, result
    return {k: v.strip() for k, v in (line.split(":", 1) for line in result.out.splitlines() if ":" in line)}


def test_describe_shows_the_result_or_the_reason_of_a_closed_execution(cli, boto):
    boto_start(boto, "ok", taskList={"name": "ok-tl"})
    complete_with(boto, "ok-tl", "CompleteWorkflowExecution", result="Hello, World!")
    boto_start(boto, "bad", taskList={"name": "bad-tl"})
    complete_with(boto, "bad-tl", "FailWorkflowExecution", reason="greet failed 3 times", details="line 1\nline 2")
    boto_start(boto, "killed")
    boto.terminate_workflow_execution(domain=DOMAIN, workflowId="killed", reason="by hand", details="why not")

    assert describe_fields(cli("-d", DOMAIN, "describe", "-i", "ok"))["Result"] == "Hello, World!"
    result = cli("-d", DOMAIN, "describe", "-i", "bad")
    fields = describe_fields(result)
    assert fields["Status"] == "FAILED"
    assert fields["Failure reason"] == "greet failed 3 times"
    # A value of several lines stays under its label.
    lines = result.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Failure details:"))
    column = lines[at].index("line 1")
    assert lines[at + 1] == " " * column + "line 2"
    fields = describe_fields(cli("-d", DOMAIN, "describe", "-i", "killed"))
    assert (fields["Status"], fields["Reason"], fields["Details"]) == ("TERMINATED", "by hand", "why not")

    data = json.loads(cli("-d", DOMAIN, "describe", "-i", "ok", "--json").out)
    assert data["closeEvent"]["eventType"] == "WorkflowExecutionCompleted"
    assert data["closeEvent"]["workflowExecutionCompletedEventAttributes"]["result"] == "Hello, World!"
    # An open execution: no close event, no extra call.
    boto_start(boto, "open")
    assert "closeEvent" not in json.loads(cli("-d", DOMAIN, "describe", "-i", "open", "--json").out)
    assert "Result" not in describe_fields(cli("-d", DOMAIN, "describe", "-i", "open"))


@pytest.mark.parametrize(
    "entry", [ctl.main, ctl.seed_list, ctl.seed_start], ids=["caravanctl", "caravan-list", "caravan-start"]
)
def test_help_names_the_exit_codes(capsys, entry):
    with pytest.raises(SystemExit) as info:
        entry(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for line in ("0   done", "1   the request failed", "2   usage", "78  configuration"):
        assert line in out
    assert "a port in use" in out


def test_start_wait_type_waits_for_a_type_being_registered(cli, monkeypatch):
    """`start --wait-type`: the decider started beside it registers the type a moment later."""
    monkeypatch.setattr(ctl, "WAIT_TYPE_INTERVAL", 0.01)
    _, stubber = stub_client(monkeypatch, REAL_SWF)
    asked = {"domain": DOMAIN, "workflowType": {"name": "Greeting", "version": "1.0"}}
    for _ in range(2):
        stubber.add_client_error(
            "describe_workflow_type",
            service_error_code="UnknownResourceFault",
            service_message="Unknown type: WorkflowType=[name=Greeting, version=1.0]",
            expected_params=asked,
        )
    stubber.add_response(
        "describe_workflow_type",
        {
            "typeInfo": {
                "workflowType": {"name": "Greeting", "version": "1.0"},
                "status": "REGISTERED",
                "creationDate": datetime.datetime(2026, 1, 1),
            },
            "configuration": {},
        },
        asked,
    )
    stubber.add_response(
        "start_workflow_execution",
        {"runId": "run-1"},
        {"domain": DOMAIN, "workflowId": "g1", "workflowType": {"name": "Greeting", "version": "1.0"}},
    )
    with stubber:
        result = cli("-d", DOMAIN, "start", "-n", "Greeting", "-v", "1.0", "-i", "g1", "--wait-type", "5")
    stubber.assert_no_pending_responses()
    assert result.code == 0 and result.out == "run-1\n", result


def test_start_wait_type_gives_up(cli, boto, monkeypatch):
    monkeypatch.setattr(ctl, "WAIT_TYPE_INTERVAL", 0.05)
    err = assert_fails(
        cli("-d", DOMAIN, "start", "-n", "Greeting", "-v", "1.0", "-i", "g1", "--wait-type", "1"),
        1,
        "workflow type Greeting 1.0 is still unknown in CaravanDemo after 1 s",
        "start a decider that serves it",
    )
    assert "Unknown type" in err
    assert open_infos(boto) == []
    assert_fails(cli("-d", DOMAIN, "start", "-n", "Demo", "-v", "0.1", "-i", "1", "--wait-type", "soon"), 2)
