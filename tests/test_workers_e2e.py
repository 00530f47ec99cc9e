"""caravan-decider and caravan-activity as real processes against a moto server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from helpers import run_cli, wait_for

from caravand import swf

pytestmark = pytest.mark.e2e

WORKLOADS = str(pathlib.Path(__file__).parent / "workloads")


@pytest.fixture
def client(endpoint):
    return swf.make_client(swf.Endpoint(endpoint_url=endpoint.url, region="us-east-1"))


def register_domain(client, name):
    client.register_domain(name=name, workflowExecutionRetentionPeriodInDays="1")


def history(client, domain, workflow_id):
    runs = client.list_open_workflow_executions(
        domain=domain, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id}
    )["executionInfos"]
    runs += client.list_closed_workflow_executions(
        domain=domain, startTimeFilter={"oldestDate": 0}, executionFilter={"workflowId": workflow_id}
    )["executionInfos"]
    run = [r for r in runs if r["execution"]["workflowId"] == workflow_id][-1]
    return client.get_workflow_execution_history(domain=domain, execution=run["execution"])["events"]


def closed_event(client, domain, workflow_id):
    """The execution's closing event (WorkflowExecutionCompleted, ...Failed, ...), or None while open."""
    for event in history(client, domain, workflow_id):
        if event["eventType"] in (
            "WorkflowExecutionCompleted",
            "WorkflowExecutionFailed",
            "WorkflowExecutionTerminated",
            "WorkflowExecutionTimedOut",
        ):
            return event
    return None


def test_seed_demo_verbatim(endpoint, client, spawn):
    """The seed README's demo, command for command."""
    done = run_cli("caravan-domain-register", "-n", "CaravanDemo", "--retention-days", "1")
    assert done.returncode == 0, done.stderr
    decider = spawn(
        "caravan-decider", "-d", "CaravanDemo", "-m", "caravand.examples.demo", "-t", "default", "--verbose"
    )
    decider.wait_output("polling: CaravanDemo/default")

    started = run_cli("caravan-start", "-d", "CaravanDemo", "-n", "Demo", "-v", "0.1", "-i", "1")
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: any(e["eventType"] == "TimerStarted" for e in history(client, "CaravanDemo", "1")),
        message="the Demo's timer",
    )
    listed = run_cli("caravan-list", "-d", "CaravanDemo", "--oldest", "2015-01-01")
    assert started.stdout.strip() in listed.stdout

    signaled = run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "PRINT", "--input", "Hello World!")
    assert signaled.returncode == 0, signaled.stderr
    decider.wait_output("The signal input is: 'Hello World!'")

    assert run_cli("caravan-signal", "-d", "CaravanDemo", "-i", "1", "-s", "STOP").returncode == 0
    completed = wait_for(lambda: closed_event(client, "CaravanDemo", "1"), message="the Demo to close")
    assert completed["eventType"] == "WorkflowExecutionCompleted"
    assert json.loads(completed["workflowExecutionCompletedEventAttributes"]["result"]) == {"success": True}

    decider.send(signal.SIGTERM)
    assert decider.wait(timeout=15) == 0
    assert "stopped: CaravanDemo/default" in decider.output()


def start_greeting(client, workflow_id, params):
    client.start_workflow_execution(
        domain="Greetings",
        workflowId=workflow_id,
        workflowType={"name": "Greeting", "version": "1.0"},
        input=json.dumps(params),
    )


@pytest.fixture
def greeting_fleet(endpoint, client, spawn):
    register_domain(client, "Greetings")
    decider = spawn(
        "caravan-decider", "-d", "Greetings", "-m", "caravand.examples.greeting", "-t", "greeting", "--verbose"
    )
    worker = spawn(
        "caravan-activity",
        "-d",
        "Greetings",
        "-m",
        "caravand.examples.greeting_activities",
        "-t",
        "greeting-activities",
        "--verbose",
    )
    decider.wait_output("polling: Greetings/greeting")
    worker.wait_output("polling: Greetings/greeting-activities")
    return decider, worker


def test_greeting_completes_with_its_result(client, greeting_fleet):
    start_greeting(client, "greet-1", {"name": "  world "})
    closed = wait_for(lambda: closed_event(client, "Greetings", "greet-1"), timeout=60, message="greet-1 to close")
    assert closed["eventType"] == "WorkflowExecutionCompleted"
    assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "Hello, World!"


def test_activity_that_raises_once_succeeds_on_retry(client, greeting_fleet):
    start_greeting(client, "greet-2", {"name": "retry", "fail_attempts": 1})
    closed = wait_for(lambda: closed_event(client, "Greetings", "greet-2"), timeout=60, message="greet-2 to close")
    assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "Hello, Retry!"
    failures = [e for e in history(client, "Greetings", "greet-2") if e["eventType"] == "ActivityTaskFailed"]
    assert len(failures) == 1
    assert "attempt 1 fails on purpose" in failures[0]["activityTaskFailedEventAttributes"]["reason"]
    _, worker = greeting_fleet
    assert "RuntimeError: attempt 1 fails on purpose" in worker.output()


def test_sigterm_during_an_activity_finishes_and_answers_it(client, spawn, tmp_path):
    """SIGTERM while run() works: the task is completed and answered, then the worker exits 0."""
    register_domain(client, "Slow")
    env = dict(os.environ, PYTHONPATH=WORKLOADS, PYTHONUNBUFFERED="1")
    decider = spawn(
        "caravan-decider", "-d", "Slow", "-m", "slow_workflow", "-t", "slow-decisions", "--verbose", env=env
    )
    worker = spawn("caravan-activity", "-d", "Slow", "-m", "slow_activities", "-t", "slow", "--verbose", env=env)
    decider.wait_output("polling: Slow/slow-decisions")
    worker.wait_output("polling: Slow/slow")
    client.start_workflow_execution(
        domain="Slow", workflowId="slow-1", workflowType={"name": "SlowOne", "version": "1.0"}, input=str(tmp_path)
    )
    wait_for(lambda: (tmp_path / "started").exists(), timeout=30, message="the activity to start")
    assert int((tmp_path / "started").read_text()) == worker.pid

    worker.send(signal.SIGTERM)
    # Had the worker died of it, the task would go unanswered and the exit be -15.
    assert worker.process.poll() is None
    (tmp_path / "release").write_text("go")
    assert worker.wait(timeout=30) == 0

    events = history(client, "Slow", "slow-1")
    completed = [e for e in events if e["eventType"] == "ActivityTaskCompleted"]
    assert [e["activityTaskCompletedEventAttributes"]["result"] for e in completed] == ["released"]
    closed = wait_for(lambda: closed_event(client, "Slow", "slow-1"), timeout=30, message="slow-1 to close")
    assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "released"
    assert "stopped: Slow/slow (completed 1" in worker.output()


def test_a_first_ctrl_c_says_it_waits_for_the_poll_and_a_second_quits_at_once(client, spawn):
    """SWF may hold the poll in flight a minute: a silent minute after Ctrl-C looks hung, so it says why."""
    register_domain(client, "Quiet")
    first = spawn("caravan-decider", "-d", "Quiet", "-m", "caravand.examples.demo", "-t", "t")
    first.wait_output("polling: Quiet/t")
    first.send(signal.SIGINT)
    first.wait_output("caravan-decider: stopping after the poll in flight (SWF may hold it up to 60 s)")
    assert first.wait(timeout=20) == 0  # the session's endpoint holds a poll 1 s
    assert "stopped: Quiet/t" in first.output()
    second = spawn("caravan-decider", "-d", "Quiet", "-m", "caravand.examples.demo", "-t", "t")
    second.wait_output("polling: Quiet/t")
    second.send(signal.SIGINT)
    second.wait_output("Ctrl-C again to quit at once")
    second.send(signal.SIGINT)
    assert second.wait(timeout=20) == 130  # interrupted, as a shell's Ctrl-C: no traceback
    assert "Traceback" not in second.output() and "stopped: Quiet/t" not in second.output()


# -- issue 8: a new user's path


#: The README's Greeting block (section "Demo"), line for line, as a user pastes it after the demo's setup
#: (`. .venv/bin/activate`, `eval "$(caravanctl local-endpoint --env)"`, the CaravanDemo domain registered).
GREETING_BLOCK = """\
caravan-activity -d CaravanDemo -m caravand.examples.greeting_activities -t greeting-activities &
caravan-decider -d CaravanDemo -m caravand.examples.greeting -t greeting &
caravanctl -d CaravanDemo start --wait-type 30 -n Greeting -v 1.0 -i hello-1 --input '{"name": "world"}'
caravanctl -d CaravanDemo describe -i hello-1
"""


def venv_env(**extra: str) -> dict:
    """The environment of a shell after `. .venv/bin/activate`: our console scripts first on PATH."""
    bin_dir = os.path.dirname(sys.executable)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1", **extra)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def end(pids: list[int]) -> None:
    """SIGTERM each of our background workers by PID, then SIGKILL whichever is still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: all(gone(pid) for pid in pids), timeout=15, message=f"pids {pids} to stop")
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_readmes_greeting_block_works_as_pasted(endpoint, client, spawn):
    """Pasted as one block, `start` used to run before the backgrounded workers had registered the types
    (UnknownResourceFault: Unknown type). And without --verbose the workers print one line per task."""
    register_domain(client, "CaravanDemo")
    script = GREETING_BLOCK + 'echo "background: $(jobs -p | tr "\\n" " ")"\n'
    shell = spawn("bash", "-e", "-c", script, env=venv_env())
    pids: list[int] = []
    try:
        code = shell.wait(timeout=60)
        output = shell.output()
        pids = [int(pid) for pid in output.split("background:", 1)[1].split()]
        assert len(pids) == 2
        assert code == 0, output
        assert "UnknownResourceFault" not in output and "Traceback" not in output
        assert "Workflow id:       hello-1" in output  # describe, right after start: its status so far

        def result():
            described = run_cli("caravanctl", "-d", "CaravanDemo", "describe", "-i", "hello-1")
            assert described.returncode == 0, described.stderr
            return "Status:            COMPLETED" in described.stdout and described.stdout

        try:
            described = wait_for(result, timeout=60, message="hello-1 to complete")
        except AssertionError as late:  # say what the workers and SWF saw: a flake must be diagnosable
            events = [e["eventType"] for e in history(client, "CaravanDemo", "hello-1")]
            raise AssertionError(f"{late}\nhistory: {events}\nworkers:\n{shell.output()[-4000:]}") from None
        assert "Result:            Hello, World!" in described
        # One line per task at the default level, as the daemon's children print them.
        output = shell.output()  # the workers write where the shell did
        assert "deciding: <DecisionTask Greeting v=1.0 id=hello-1" in output
        assert output.count("working: ") == 2  # NormalizeName, then Greet
    finally:
        end(pids)


MYBENCH = """\
from caravand import Workflow


class MyBench(Workflow):
    name = "MyBench"
    version = "1"
    default_task_list = "t"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "30"
    default_child_policy = "TERMINATE"

    def run(self):
        self.task.complete("benched")
"""


@pytest.fixture
def user_module(tmp_path):
    """mybench.py in the user's own directory, and another directory beside it."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "mybench.py").write_text(MYBENCH)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return app, elsewhere


def decider_in(directory, *extra: str) -> subprocess.Popen:
    argv = [os.path.join(os.path.dirname(sys.executable), "caravan-decider"), "-d", "Bench", "-t", "t", "-m", "mybench"]
    return subprocess.Popen(
        [*argv, *extra], cwd=directory, env=venv_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def serves_mybench(client, process: subprocess.Popen) -> None:
    """The decider found mybench: it registered MyBench and completes an execution of it; SIGTERM ends it (0)."""
    try:
        wait_for(
            lambda: (
                client.list_workflow_types(domain="Bench", registrationStatus="REGISTERED")["typeInfos"]
                or process.poll() is not None
            ),
            timeout=30,
            message="MyBench to be registered",
        )
        assert process.poll() is None, process.communicate()
        client.start_workflow_execution(
            domain="Bench", workflowId="b1", workflowType={"name": "MyBench", "version": "1"}
        )
        closed = wait_for(lambda: closed_event(client, "Bench", "b1"), timeout=30, message="b1 to close")
        assert closed["workflowExecutionCompletedEventAttributes"]["result"] == "benched"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "polling: Bench/t" in err  # at the default level, without --verbose
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_module_in_the_working_directory_is_found(endpoint, client, user_module):
    """As `python -m` does (a console script puts its own bin/ first on sys.path, not the working directory)."""
    register_domain(client, "Bench")
    app, _ = user_module
    serves_mybench(client, decider_in(app))


def test_a_module_elsewhere_is_not_found_and_the_error_says_where_it_looked(endpoint, client, user_module):
    register_domain(client, "Bench")
    _, elsewhere = user_module
    process = decider_in(elsewhere)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 78, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"caravan-decider: error: cannot import module 'mybench' (searched: {elsewhere}, ")
    assert "the standard library and site-packages): " in err
    assert "give --pythonpath DIR, or install the package" in err


def test_pythonpath_finds_a_module_in_another_directory(endpoint, client, user_module):
    """gunicorn's --pythonpath DIR[,DIR...], relative to the working directory."""
    register_domain(client, "Bench")
    _, elsewhere = user_module
    serves_mybench(client, decider_in(elsewhere, "--pythonpath", "../app"))


def test_pythonpath_that_does_not_exist_is_a_config_error(endpoint, user_module):
    _, elsewhere = user_module
    process = decider_in(elsewhere, "--pythonpath", "lib,../nowhere")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 78
    assert err == "caravan-decider: error: --pythonpath lib: no such directory\n"


@pytest.mark.parametrize("command", ["caravan-decider", "caravan-activity"])
def test_partial_credentials_are_one_line_and_78(endpoint, command):
    env = {k: v for k, v in os.environ.items() if k != "AWS_SECRET_ACCESS_KEY"}
    modules = "caravand.examples.demo" if command == "caravan-decider" else "caravand.examples.greeting_activities"
    result = run_cli(command, "-d", "D", "-t", "t", "-m", modules, env=env, timeout=30)
    assert result.returncode == 78, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "incomplete AWS credentials" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr
