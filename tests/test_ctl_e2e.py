"""caravanctl and the seed's caravan-* commands as real processes, on a moto server on 127.0.0.1.

The `endpoint` fixture empties the server and sets AWS_ENDPOINT_URL_SWF in
the environment the commands inherit; nothing here can reach past loopback.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import boto3
import pytest
from endpoints import SilentEndpoint
from helpers import run_cli

pytestmark = pytest.mark.e2e

DEMO = "CaravanDemo"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, noted, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ok(result) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def fails(result, code: int, *fragments: str) -> str:
    """Exit ``code``, exactly one line on stderr, no traceback, nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr
    return result.stderr


def aws(url: str, *argv: str) -> dict:
    """The AWS CLI, as a cross-check of what caravanctl did."""
    result = run_cli("aws", "swf", *argv, "--endpoint-url", url, "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def register_demo_type(url: str) -> None:
    aws(
        url,
        "register-workflow-type",
        "--domain", DEMO,
        "--name", "Demo",
        "--workflow-version", "0.1",
        "--default-task-list", "name=default",
        "--default-execution-start-to-close-timeout", "600",
        "--default-task-start-to-close-timeout", "10",
        "--default-child-policy", "TERMINATE",
    )  # fmt: skip


@pytest.fixture
def client(endpoint):
    return boto3.client("swf", endpoint_url=endpoint.url, region_name="us-east-1")


@pytest.fixture
def demo(endpoint, client):
    """The demo domain and its Demo 0.1 type, registered directly."""
    client.register_domain(name=DEMO, workflowExecutionRetentionPeriodInDays="1")
    client.register_workflow_type(
        domain=DEMO,
        name="Demo",
        version="0.1",
        defaultTaskList={"name": "default"},
        defaultExecutionStartToCloseTimeout="600",
        defaultTaskStartToCloseTimeout="10",
        defaultChildPolicy="TERMINATE",
    )
    return client


def test_seed_demo_verbatim(endpoint, client):
    url = endpoint.url
    out = ok(run_cli("caravan-domain-register", "-n", "CaravanDemo", "--retention-days", "1"))
    assert out == "registered: CaravanDemo (retention 1 days)\n"
    out = ok(run_cli("caravan-domain-list"))
    assert out.splitlines()[1].split() == ["CaravanDemo", "REGISTERED"]
    # The AWS CLI sees the domain caravanctl registered.
    domains = aws(url, "list-domains", "--registration-status", "REGISTERED")["domainInfos"]
    assert [d["name"] for d in domains] == ["CaravanDemo"]
    assert aws(url, "describe-domain", "--name", "CaravanDemo")["configuration"] == {
        "workflowExecutionRetentionPeriodInDays": "1"
    }

    register_demo_type(url)

    run_id = ok(run_cli("caravan-start", "-d", "CaravanDemo", "-n", "Demo", "-v", "0.1", "-i", "1")).strip()
    assert re.fullmatch(r"[0-9A-Za-z+/=-]{20,}", run_id)

    for argv in (["-d", "CaravanDemo"], ["-d", "CaravanDemo", "--oldest", "2015-01-01"]):
        header, *rows = ok(run_cli("caravan-list", *argv)).splitlines()
        assert header.split()[:2] == ["WORKFLOW", "ID"]
        assert len(rows) == 1
        assert rows[0].split()[:5] == ["1", run_id, "Demo", "0.1", "OPEN"]

    out = ok(run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "PRINT", "--input", "Hello World!"))
    assert out == "signaled: 1 (PRINT)\n"
    ok(run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "PRINT", "--input", "Lorem ipsum"))
    ok(run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "STOP"))

    history = ok(run_cli("caravanctl", "-d", "CaravanDemo", "history", "-i", "1"))
    assert "WorkflowExecutionSignaled" in history
    # The attributes are JSON, never Python reprs.
    assert '{"input": "Hello World!", "signalName": "PRINT"}' in history
    assert '{"input": "Lorem ipsum", "signalName": "PRINT"}' in history
    assert '"signalName": "STOP"' in history
    assert "'signalName'" not in history
    # The AWS CLI reads the same history.
    events = aws(
        url, "get-workflow-execution-history", "--domain", DEMO, "--execution", f"workflowId=1,runId={run_id}"
    )["events"]
    signals = [
        e["workflowExecutionSignaledEventAttributes"] for e in events if e["eventType"] == "WorkflowExecutionSignaled"
    ]
    assert [(s["signalName"], s.get("input")) for s in signals] == [
        ("PRINT", "Hello World!"),
        ("PRINT", "Lorem ipsum"),
        ("STOP", None),
    ]

    assert ok(run_cli("caravan-terminate", "-d", "CaravanDemo", "-i", "1")) == "terminated: 1\n"
    header, *rows = ok(run_cli("caravanctl", "-d", "CaravanDemo", "list", "--closed")).splitlines()
    assert [row.split()[:5] for row in rows] == [["1", run_id, "Demo", "0.1", "TERMINATED"]]
    assert ok(run_cli("caravan-list", "-d", "CaravanDemo")).startswith("no open executions started from ")
    closed = client.list_closed_workflow_executions(domain=DEMO, startTimeFilter={"oldestDate": 0})
    assert [i["closeStatus"] for i in closed["executionInfos"]] == ["TERMINATED"]


def test_caravanctl_commands_over_http(demo, endpoint):
    """Every read command once, over real HTTP, with the AWS CLI as a cross-check."""
    run_id = ok(
        run_cli("caravanctl", "-d", DEMO, "start", "-n", "Demo", "-v", "0.1", "-i", "w1", "--tag-list", "red blue")
    ).strip()
    described = aws(
        endpoint.url, "describe-workflow-execution", "--domain", DEMO, "--execution", f"workflowId=w1,runId={run_id}"
    )
    assert described["executionInfo"]["tagList"] == ["red", "blue"]

    infos = json.loads(ok(run_cli("caravanctl", "-d", DEMO, "list", "--tag", "red", "--json")))
    assert [i["execution"]["runId"] for i in infos] == [run_id]
    assert json.loads(ok(run_cli("caravanctl", "-d", DEMO, "list", "--tag", "green", "--json"))) == []
    assert json.loads(ok(run_cli("caravanctl", "-d", DEMO, "list", "-n", "Demo", "--json")))[0]["tagList"] == [
        "red",
        "blue",
    ]
    data = json.loads(ok(run_cli("caravanctl", "-d", DEMO, "describe", "-i", "w1", "--json")))
    assert data["executionInfo"]["execution"] == {"workflowId": "w1", "runId": run_id}
    assert ok(run_cli("caravanctl", "-d", DEMO, "pending", "-t", "default")) == "1 pending decision tasks on default\n"
    assert ok(run_cli("caravanctl", "-d", DEMO, "types", "list")).splitlines()[1].split() == [
        "workflow",
        "Demo",
        "0.1",
        "REGISTERED",
    ]
    assert "Retention days: 1" in ok(run_cli("caravanctl", "domain", "describe", DEMO))
    ok(run_cli("caravanctl", "-d", DEMO, "terminate", "-i", "w1", "--reason", "done"))
    events = json.loads(ok(run_cli("caravanctl", "-d", DEMO, "history", "-i", "w1", "--run-id", run_id, "--json")))
    assert events[-1]["eventType"] == "WorkflowExecutionTerminated"
    assert events[-1]["workflowExecutionTerminatedEventAttributes"]["reason"] == "done"


def env_without(*names: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(extra)
    return env


def test_config_file_endpoint(endpoint, client, tmp_path):
    ini = tmp_path / "caravan.ini"
    ini.write_text(f"[caravand]\nendpoint_url = {endpoint.url}\n")
    env = env_without("AWS_ENDPOINT_URL_SWF")
    out = ok(run_cli("caravanctl", "-c", str(ini), "domain", "register", "FromIni", "--retention-days", "2", env=env))
    assert out == "registered: FromIni (retention 2 days)\n"
    assert [d["name"] for d in client.list_domains(registrationStatus="REGISTERED")["domainInfos"]] == ["FromIni"]
    assert "FromIni" in ok(run_cli("caravan-domain-list", "-c", str(ini), env=env))
    # A flag beats the ini.
    fails(
        run_cli("caravanctl", "-c", str(ini), "--endpoint-url", f"http://127.0.0.1:{closed_port()}", "domain", "list",
                env=env),
        1,
        "EndpointConnectionError",
    )  # fmt: skip


def test_config_file_embedded_endpoint_needs_no_aws_setup(endpoint, client, tmp_path):
    """`endpoint_url = embedded`: a region and dummy keys, on a machine with no AWS setup at all."""
    port = endpoint.url.rsplit(":", 1)[1]
    ini = tmp_path / "caravan-local.ini"
    ini.write_text(f"[caravand]\nendpoint_url = embedded\nembedded_port = {port}\n")
    env = env_without("AWS_ENDPOINT_URL_SWF", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    ok(run_cli("caravan-domain-register", "-c", str(ini), "-n", "Local", "--retention-days", "1", env=env))
    assert [d["name"] for d in client.list_domains(registrationStatus="REGISTERED")["domainInfos"]] == ["Local"]
    out = ok(run_cli("caravanctl", "-c", str(ini), "local-endpoint", "--env", env=env))
    assert out.splitlines()[0] == f"export AWS_ENDPOINT_URL_SWF=http://127.0.0.1:{port}"


def test_unreachable_endpoint_fails_fast(endpoint):
    url = f"http://127.0.0.1:{closed_port()}"
    began = time.monotonic()
    result = run_cli("caravanctl", "--endpoint-url", url, "-d", DEMO, "list", timeout=60)
    elapsed = time.monotonic() - began
    fails(result, 1, "ListOpenWorkflowExecutions failed: EndpointConnectionError", url)
    assert elapsed < 20

    began = time.monotonic()
    result = run_cli("caravan-start", "-d", DEMO, "-n", "Demo", "-v", "0.1", "-i", "1",
                     env=dict(os.environ, AWS_ENDPOINT_URL_SWF=url), timeout=60)  # fmt: skip
    assert time.monotonic() - began < 20
    fails(result, 1, "StartWorkflowExecution failed: EndpointConnectionError")


@pytest.mark.parametrize(
    "argv, code, fragments",
    [
        (["caravan-list", "-d", DEMO, "--oldest", "2015-31-01"], 2, ["'2015-31-01' is not a time"]),
        (["caravanctl", "-d", DEMO, "list", "-n", "Demo", "--tag", "red"], 2, ["cannot be used together"]),
        (
            ["caravan-start", "-d", DEMO, "-n", "Demo", "-v", "0.1", "-i", "1", "--input", "x" * 32769],
            2,
            ["SWF accepts at most 32768"],
        ),
        (["caravan-terminate", "-d", DEMO, "-i", "1", "--reason", "r" * 257], 2, ["SWF accepts at most 256"]),
        (["caravan-list", "-d", "Nope"], 1, ["ListOpenWorkflowExecutions failed: UnknownResourceFault", "Nope"]),
        (["caravanctl", "frobnicate"], 2, ["invalid choice"]),
        (["caravan-signal", "-d", DEMO, "-i", "1"], 2, ["-s/--signal"]),
    ],
)
def test_bad_input_is_one_line(demo, argv, code, fragments):
    fails(run_cli(*argv), code, *fragments)
    assert demo.list_open_workflow_executions(domain=DEMO, startTimeFilter={"oldestDate": 0})["executionInfos"] == []


def test_missing_credentials(endpoint):
    env = env_without("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    fails(run_cli("caravan-domain-list", env=env), 78, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("garbage\n[caravand]\n", "malformed ini"),
        ("[caravand]\nendpoint_url\n", "malformed ini"),
        ("", "no [caravand]"),
    ],
)
def test_malformed_ini(endpoint, tmp_path, text, fragment):
    ini = tmp_path / "bad.ini"
    ini.write_text(text)
    fails(run_cli("caravanctl", "-c", str(ini), "domain", "list"), 78, str(ini), fragment)


def test_local_endpoint(spawn):
    port = closed_port()
    server = spawn("caravanctl", "local-endpoint", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    out = server.wait_output(f"export AWS_ENDPOINT_URL_SWF={url}", timeout=30)
    assert f"local SWF endpoint: {url}" in out
    # `ps | grep 'caravand:'` shows it beside the master and its children.
    with open(f"/proc/{server.pid}/cmdline", "rb") as f:
        assert f.read().rstrip(b"\0").decode() == f"caravand: endpoint 127.0.0.1:{port}"
    env = dict(os.environ, AWS_ENDPOINT_URL_SWF=url)
    ok(run_cli("caravanctl", "domain", "register", "Local", "--retention-days", "1", env=env))
    assert ok(run_cli("caravanctl", "domain", "list", env=env)).splitlines()[1].split() == ["Local", "REGISTERED"]

    server.send(signal.SIGTERM)
    assert server.wait(timeout=5) == 0
    # The port is free again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_local_endpoint_port_taken(endpoint, tmp_path):
    """A port in use is a configuration error (78), as in caravand; the message says what changes it."""
    port = endpoint.url.rsplit(":", 1)[1]
    began = time.monotonic()
    fails(
        run_cli("caravanctl", "local-endpoint", "--port", port, timeout=30),
        78,
        f"cannot listen on 127.0.0.1:{port}: address already in use",
        "give --port another port",
    )
    assert time.monotonic() - began < 20
    ini = tmp_path / "caravan.ini"
    ini.write_text(f"[caravand]\nendpoint_url = embedded\nembedded_port = {port}\n")
    fails(
        run_cli("caravanctl", "-c", str(ini), "local-endpoint", timeout=30),
        78,
        "address already in use",
        f"set embedded_port in [caravand] of {ini} to another port, or give --port",
    )
    # The running server was not disturbed.
    assert ok(run_cli("caravanctl", "domain", "list")) == "no domains\n"


def test_local_endpoint_env():
    out = ok(run_cli("caravanctl", "local-endpoint", "--env", "--port", "4612"))
    lines = out.splitlines()
    assert lines[0] == "export AWS_ENDPOINT_URL_SWF=http://127.0.0.1:4612"
    assert all(line.startswith("export ") for line in lines)
    assert {line.split("=", 1)[0] for line in lines} == {
        "export AWS_ENDPOINT_URL_SWF",
        "export AWS_DEFAULT_REGION",
        "export AWS_ACCESS_KEY_ID",
        "export AWS_SECRET_ACCESS_KEY",
    }


# -- issue 8: bounded calls, messages that say what the user asked for, the emulator's gaps


def test_an_endpoint_that_never_answers_fails_in_about_15_s(tmp_path):
    """It accepts connections and never answers: caravanctl waited 60 s (3 x 20 s reads), caravan-decider's
    registration as long. Each is now bounded by the documented total, retries included, and says so in one
    line; describe names what was asked, not the list call that finds the run. Run side by side."""
    with SilentEndpoint() as silent:
        env = dict(os.environ, AWS_ENDPOINT_URL_SWF=silent.url, PYTHONUNBUFFERED="1")
        commands = {
            "list": ["caravanctl", "-d", DEMO, "list"],
            "describe": ["caravanctl", "-d", DEMO, "describe", "-i", "w1"],
            "decider": ["caravan-decider", "-d", DEMO, "-t", "t", "-m", "caravand.examples.demo"],
        }
        began = time.monotonic()
        running = {
            name: subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), argv[0]), *argv[1:]],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )  # fmt: skip
            for name, argv in commands.items()
        }
        try:
            results = {}
            for name, process in running.items():
                out, err = process.communicate(timeout=40)
                results[name] = (process.returncode, out, err, time.monotonic() - began)
        finally:
            for process in running.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert silent.accepted >= 3
    for name, (code, _out, err, elapsed) in results.items():
        assert 10 < elapsed < 20, (name, elapsed, err)
        assert code == 1 and "Traceback" not in err, (name, code, err)
        assert "ReadTimeoutError" in err.splitlines()[-1] and "gave up after" in err.splitlines()[-1], (name, err)
    assert results["list"][2].count("\n") == 1
    assert results["list"][2].startswith("caravanctl: error: ListOpenWorkflowExecutions failed: ReadTimeoutError")
    describe_err = results["describe"][2]
    assert describe_err.count("\n") == 1
    assert describe_err.startswith("caravanctl: error: describe -i w1 failed: ReadTimeoutError: ")
    assert "while looking for its run with ListOpenWorkflowExecutions" in describe_err
    assert (
        results["decider"][2]
        .splitlines()[-1]
        .startswith("caravan-decider: error: RegisterWorkflowType failed: ReadTimeoutError")
    )


def test_the_emulator_says_what_it_lacks_instead_of_html(demo):
    err = fails(run_cli("caravanctl", "--region", "bogus-1", "domain", "list"), 1, "ListDomains failed")
    assert "the local SWF endpoint knows no region 'bogus-1'" in err
    assert "<" not in err and "Internal Server Error" not in err


def test_history_of_an_unknown_id_names_what_was_asked(demo):
    err = fails(run_cli("caravanctl", "-d", DEMO, "history", "-i", "nope"), 1, "history -i nope failed")
    assert "DescribeWorkflowExecution" not in err and "no execution has workflow id 'nope'" in err


def test_list_json_and_describe_give_the_close_time_of_a_terminated_execution(demo):
    """The emulator gave a terminated execution no close time (SWF does); the embedded endpoint mends it."""
    run_id = ok(run_cli("caravanctl", "-d", DEMO, "start", "-n", "Demo", "-v", "0.1", "-i", "t1")).strip()
    ok(run_cli("caravanctl", "-d", DEMO, "terminate", "-i", "t1", "--reason", "enough"))
    (info,) = json.loads(ok(run_cli("caravanctl", "-d", DEMO, "list", "--closed", "--json")))
    assert info["execution"]["runId"] == run_id and info["closeStatus"] == "TERMINATED"
    closed = datetime.datetime.fromisoformat(info["closeTimestamp"])
    assert datetime.datetime.fromisoformat(info["startTimestamp"]) <= closed
    assert abs(datetime.datetime.now(datetime.timezone.utc) - closed) < datetime.timedelta(minutes=5)
    described = ok(run_cli("caravanctl", "-d", DEMO, "describe", "-i", "t1"))
    assert "Closed:" in described and "Reason:            enough" in described


def test_partial_credentials_are_one_line_and_78(endpoint):
    env = env_without("AWS_SECRET_ACCESS_KEY")
    fails(run_cli("caravanctl", "domain", "list", env=env), 78, "incomplete AWS credentials", "AWS_SECRET_ACCESS_KEY")


def test_oldest_takes_a_negative_age(demo):
    run_cli("caravanctl", "-d", DEMO, "start", "-n", "Demo", "-v", "0.1", "-i", "1")
    header, *rows = ok(run_cli("caravan-list", "-d", DEMO, "--oldest", "-1d")).splitlines()
    assert [row.split()[0] for row in rows] == ["1"]


def test_help_names_the_exit_codes():
    out = ok(run_cli("caravanctl", "--help"))
    assert "exit codes:" in out and "78  configuration" in out


def test_start_wait_type_waits_for_the_decider_to_register_it(endpoint, client, spawn):
    """`start --wait-type` started beside the decider that registers the type (the README's Greeting block)."""
    client.register_domain(name=DEMO, workflowExecutionRetentionPeriodInDays="1")
    argv = ["caravanctl", "--verbose", "-d", DEMO, "start", "-n", "Demo", "-v", "0.1", "-i", "w", "--wait-type", "30"]
    starter = spawn(*argv)
    starter.wait_output("calling DescribeWorkflowType")  # it asked, and the type is not there yet
    assert starter.process.poll() is None
    spawn("caravan-decider", "-d", DEMO, "-t", "default", "-m", "caravand.examples.demo")
    assert starter.wait(timeout=30) == 0, starter.output()
    (info,) = client.list_open_workflow_executions(domain=DEMO, startTimeFilter={"oldestDate": 0})["executionInfos"]
    assert starter.output().splitlines()[-1] == info["execution"]["runId"]
