"""Conformance of the embedded local SWF endpoint (moto + caravand.emulator) to SWF's documented behaviour.

One test per behaviour of issue 13's items 1-7, each citing the page of the
SWF documentation it holds the endpoint to. Most run in this process: on a
backend of their own (items 1-6, the fixtures of test_emulator) or through
boto3 on in-process moto (``api``: botocore's serializer and moto's request
parsing, as over HTTP); those marked e2e ask the session's real endpoint
over HTTP.

Against stock behaviour: ``CONFORMANCE_STOCK=all`` runs these tests with no
patch installed (moto 5.2.5 as it is), ``CONFORMANCE_STOCK=7`` without item
7's patches; every test of what moto gets wrong then fails.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers import FakeClock
from test_emulator import (  # the helpers of the emulator's unit tests
    ACCOUNT,
    REGION,
    Poll,
    decide,
    events,
    held,
    make_backend,
    schedule,
    start,
)

from caravand import emulator

moto_swf = pytest.importorskip("moto.swf.models")
STOCK = os.environ.get("CONFORMANCE_STOCK", "")


@pytest.fixture
def clock():
    return FakeClock(now=1_700_000_000.0)


@pytest.fixture
def emu(clock, monkeypatch):
    """The patches installed (a 0.2 s hold) unless CONFORMANCE_STOCK says otherwise; moto put back afterwards."""
    if STOCK == "all":
        monkeypatch.setattr(emulator, "_patch", lambda: None)
    elif STOCK == "7":
        monkeypatch.setattr(emulator, "_patch_lists_and_cancels", lambda: None)
    machine = emulator.install(poll_hold=0.2, clock=clock)
    yield machine
    emulator.uninstall()


@pytest.fixture
def backend(emu):
    return make_backend(emu)


@pytest.fixture
def api(emu):
    """boto3 on in-process moto, the patches installed: domain D, workflow W (list 'decide'), activity A ('work')."""
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("swf", region_name=REGION)
        client.register_domain(name="D", workflowExecutionRetentionPeriodInDays="1")
        client.register_workflow_type(
            domain="D", name="W", version="1", defaultTaskList={"name": "decide"},
            defaultTaskStartToCloseTimeout="10", defaultExecutionStartToCloseTimeout="3600",
            defaultChildPolicy="TERMINATE",
        )  # fmt: skip
        client.register_activity_type(
            domain="D", name="A", version="1", defaultTaskList={"name": "work"},
            defaultTaskScheduleToStartTimeout="NONE", defaultTaskScheduleToCloseTimeout="NONE",
            defaultTaskStartToCloseTimeout="60", defaultTaskHeartbeatTimeout="NONE",
        )  # fmt: skip
        yield client


def moto_backend():
    return moto_swf.swf_backends[ACCOUNT][REGION]


def run(api, workflow_id: str, **options) -> dict:
    """Start an execution of W; its {workflowId, runId}."""
    options.setdefault("workflowType", {"name": "W", "version": "1"})
    answer = api.start_workflow_execution(domain="D", workflowId=workflow_id, **options)
    return {"workflowId": workflow_id, "runId": answer["runId"]}


def answer(api, decisions, task_list: str = "decide") -> dict:
    """Poll a decision task of ``task_list`` and complete it with ``decisions``; the task."""
    task = api.poll_for_decision_task(domain="D", taskList={"name": task_list})
    assert task.get("taskToken"), "a decision task was due"
    api.respond_decision_task_completed(taskToken=task["taskToken"], decisions=decisions)
    return task


def close(api, workflow_id: str, how: str = "CompleteWorkflowExecution") -> dict:
    """Start an execution and close it with the decision ``how`` (or terminate it): its execution."""
    execution = run(api, workflow_id)
    while True:  # the oldest decision task first: close the one of this execution
        task = api.poll_for_decision_task(domain="D", taskList={"name": "decide"})
        if task["workflowExecution"] == execution:
            break
        api.respond_decision_task_completed(taskToken=task["taskToken"], decisions=[])
    if how == "Terminate":
        api.respond_decision_task_completed(taskToken=task["taskToken"], decisions=[])
        api.terminate_workflow_execution(domain="D", workflowId=workflow_id)
    else:
        api.respond_decision_task_completed(taskToken=task["taskToken"], decisions=[{"decisionType": how}])
    return execution


def ids(infos) -> list[str]:
    return [info["execution"]["workflowId"] for info in infos]


def history(api, execution) -> list[dict]:
    return api.get_workflow_execution_history(domain="D", execution=execution)["events"]


def types_of(api, execution) -> list[str]:
    return [event["eventType"] for event in history(api, execution)]


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


EVER = {"oldestDate": 0}


# -- 1. long polls


def test_an_empty_poll_is_held_and_answered_as_soon_as_a_task_comes(emu, backend, clock):
    """SWF API Reference: PollForActivityTask ("a long poll ... up to 60 seconds"): a task scheduled meanwhile is
    handed to the waiting poll at once (moto: sleeps 1 s, answers empty)."""
    emulator.install(poll_hold=30, clock=clock)
    start(backend)
    decide(backend, [])
    poll = Poll(backend, "activity", "work")
    poll.start()
    held(emu, "activity", "work")
    backend.signal_workflow_execution("D", "go", "w")
    scheduled = time.monotonic()
    decide(backend, [schedule("a1")])
    poll.join(timeout=5)
    assert poll.result is not None and poll.result.activity_id == "a1"
    assert time.monotonic() - scheduled < 0.5


def test_a_poll_with_nothing_to_do_is_answered_empty_when_its_hold_ends(emu, backend):
    """SWF API Reference: PollForDecisionTask ("If no decision task is available in the specified task list
    before the timeout of 60 seconds expires, an empty result is returned"): held for the hold, not 1 s."""
    emulator.install(poll_hold=1.5, clock=emu.clock)
    started = time.monotonic()
    assert backend.poll_for_decision_task("D", "decide") is None
    assert 1.5 <= time.monotonic() - started < 3


# -- 2. held polls and a fast stop (caravand's own: SWF has no release)


def test_released_polls_are_answered_empty_at_once(emu, backend, clock):
    """SWF API Reference: PollForActivityTask (an empty result has an empty taskToken). Not SWF's but the local
    endpoint's: the master that owns it answers its children's held polls empty when it stops them."""
    emulator.install(poll_hold=30, clock=clock)
    poll = Poll(backend, "activity", "work")
    poll.start()
    held(emu, "activity", "work")
    emu.release_polls()
    poll.join(timeout=5)
    assert not poll.is_alive() and poll.result is None and poll.seconds is not None and poll.seconds < 1


# -- 3. each task once


def test_concurrent_pollers_get_each_decision_task_once(api):
    """SWF Developer Guide: Polling for tasks ("each task is delivered to exactly one poller");
    SWF API Reference: PollForDecisionTask. 4 pollers on their own threads, through moto's request handling
    as the HTTP server's threads (moto: no lock, 25 of 200 tasks delivered twice over HTTP)."""
    for i in range(100):
        run(api, f"w{i}")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often, as the server's do on a busy machine: races show
    got: list[str] = []

    def poller():
        while (task := api.poll_for_decision_task(domain="D", taskList={"name": "decide"})).get("taskToken"):
            got.append(task["taskToken"])

    threads = [threading.Thread(target=poller, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert len(got) == 100 and len(set(got)) == 100


def test_a_start_and_two_signals_schedule_one_decision_task(emu, backend):
    """SWF API Reference: HistoryEvent, DecisionTaskScheduled (one decision task open per execution at a time):
    a start and two signals before any poll make one (moto: three)."""
    execution = start(backend)
    backend.signal_workflow_execution("D", "a", "w")
    backend.signal_workflow_execution("D", "b", "w")
    assert events(execution).count("DecisionTaskScheduled") == 1


# -- 4. activity timeouts


@pytest.mark.parametrize(
    ("timeouts", "poll", "advance", "kind"),
    [
        ({"scheduleToStartTimeout": "30"}, False, 30, "SCHEDULE_TO_START"),
        ({"scheduleToCloseTimeout": "50", "heartbeatTimeout": "20"}, True, 50, "SCHEDULE_TO_CLOSE"),
        ({"startToCloseTimeout": "40", "heartbeatTimeout": "NONE"}, True, 40, "START_TO_CLOSE"),
        ({"heartbeatTimeout": "15"}, True, 15, "HEARTBEAT"),
    ],
)
def test_each_activity_timeout_is_enforced(emu, backend, clock, timeouts, poll, advance, kind):
    """SWF API Reference: ActivityTaskTimedOutEventAttributes, timeoutType (SCHEDULE_TO_START, SCHEDULE_TO_CLOSE,
    START_TO_CLOSE, HEARTBEAT; moto enforced HEARTBEAT only, from scheduling), and
    ScheduleActivityTaskDecisionAttributes for what each clock measures. The open count drops, a decision follows."""
    execution = start(backend)
    decide(backend, [schedule("a1", **timeouts)])
    if poll:
        assert backend.poll_for_activity_task("D", "work") is not None
        if kind == "SCHEDULE_TO_CLOSE":  # heartbeats keep the task alive, not past its schedule-to-close
            for _ in range(3):
                clock.advance(15)
                emu.tick([backend])
                backend.record_activity_task_heartbeat(backend.domains[0].activity_tasks[0].task_token)
            advance -= 45
    clock.advance(advance - 1)
    emu.tick([backend])
    assert "ActivityTaskTimedOut" not in events(execution)
    clock.advance(1)
    emu.tick([backend])
    [timeout] = [e for e in execution.events() if e.event_type == "ActivityTaskTimedOut"]
    assert timeout.event_attributes["timeoutType"] == kind
    assert execution.open_counts["openActivityTasks"] == 0
    assert events(execution)[-1] == "DecisionTaskScheduled"


def test_a_late_activity_respond_is_an_unknown_resource(emu, backend, clock):
    """SWF API Reference: RespondActivityTaskCompleted, Errors: UnknownResourceFault (the task timed out;
    moto: a ValueError, HTTP 500)."""
    from moto.swf.exceptions import SWFUnknownResourceFault

    start(backend)
    decide(backend, [schedule("a1", startToCloseTimeout="5", heartbeatTimeout="NONE")])
    task = backend.poll_for_activity_task("D", "work")
    clock.advance(6)
    emu.tick([backend])
    with pytest.raises(SWFUnknownResourceFault):
        backend.respond_activity_task_completed(task.task_token, result="late")


# -- 5. no leak, retention


def test_swf_models_are_not_kept_for_ever(emu, backend):
    """SWF API Reference: DescribeWorkflowExecution (a read changes nothing): 20 reads of 20 open executions keep
    no object (moto kept every model it made, a Timeout per execution per call: 45 MB in 30 s at 600)."""
    for model in (moto_swf.Timeout, moto_swf.HistoryEvent, moto_swf.WorkflowExecution):
        model.instances_tracked = []
    for i in range(20):
        start(backend, f"w{i}")
    for _ in range(20):
        backend.describe_workflow_execution("D", None, "w0")
    for model in (moto_swf.Timeout, moto_swf.HistoryEvent, moto_swf.WorkflowExecution):
        assert model.instances_tracked == []


def test_closed_executions_are_purged_past_the_domains_retention(emu, backend, clock):
    """SWF API Reference: RegisterDomain, workflowExecutionRetentionPeriodInDays (a closed execution is kept that
    long, then gone; moto kept every one)."""
    execution = start(backend)
    decide(backend, [{"decisionType": "CompleteWorkflowExecution"}])
    clock.advance(86400 - 1)
    emu.tick([backend])
    assert execution in backend.domains[0].workflow_executions
    clock.advance(2)
    emu.tick([backend])
    assert execution not in backend.domains[0].workflow_executions


# -- 6. state across restarts


def test_the_state_survives_a_save_and_load(emu, backend, tmp_path):
    """SWF Developer Guide: Basic workflow concepts, "Amazon SWF ... maintains the state of each workflow
    execution": executions, histories and tasks outlive the endpoint's process (moto: lost on restart)."""
    execution = start(backend)
    path = str(tmp_path / "state.pickle")
    emu.save(path)
    fresh = moto_swf.SWFBackend(REGION, ACCOUNT)
    assert emu.load(path, backend_for=lambda account, region: fresh) is None
    [domain] = fresh.domains
    [loaded] = domain.workflow_executions
    assert loaded.run_id == execution.run_id and events(loaded) == events(execution)
    assert [t.state for t in domain.decision_tasks] == ["SCHEDULED"]


# -- 7. filters


def test_list_open_executions_applies_the_execution_filter(api):
    """SWF API Reference: ListOpenWorkflowExecutions, executionFilter (moto: ignored, every execution listed)."""
    run(api, "one")
    run(api, "two")
    listed = api.list_open_workflow_executions(domain="D", startTimeFilter=EVER, executionFilter={"workflowId": "two"})
    assert ids(listed["executionInfos"]) == ["two"]


def test_list_closed_executions_applies_the_type_filter(api):
    """SWF API Reference: ListClosedWorkflowExecutions, typeFilter (name, and version if given; moto: ignored)."""
    api.register_workflow_type(domain="D", name="Other", version="1", defaultTaskList={"name": "decide"},
                               defaultTaskStartToCloseTimeout="10", defaultExecutionStartToCloseTimeout="3600",
                               defaultChildPolicy="TERMINATE")  # fmt: skip
    close(api, "w")
    execution = run(api, "o", workflowType={"name": "Other", "version": "1"})
    task = api.poll_for_decision_task(domain="D", taskList={"name": "decide"})
    assert task["workflowExecution"] == execution
    api.respond_decision_task_completed(taskToken=task["taskToken"],
                                        decisions=[{"decisionType": "CompleteWorkflowExecution"}])  # fmt: skip
    named = api.list_closed_workflow_executions(domain="D", startTimeFilter=EVER, typeFilter={"name": "Other"})
    versioned = api.list_closed_workflow_executions(
        domain="D", startTimeFilter=EVER, typeFilter={"name": "W", "version": "1"}
    )
    assert ids(named["executionInfos"]) == ["o"] and ids(versioned["executionInfos"]) == ["w"]


def test_list_executions_applies_the_start_time_filter(api, clock):
    """SWF API Reference: ListOpenWorkflowExecutions, startTimeFilter (oldestDate and latestDate, inclusive;
    moto: ignored)."""
    for name in ("early", "middle", "late"):
        run(api, name)
        clock.advance(100)
    at = datetime.datetime.fromtimestamp
    window = {"oldestDate": at(1_700_000_050), "latestDate": at(1_700_000_100)}
    assert ids(api.list_open_workflow_executions(domain="D", startTimeFilter=window)["executionInfos"]) == ["middle"]
    since = {"oldestDate": at(1_700_000_100)}
    assert ids(api.list_open_workflow_executions(domain="D", startTimeFilter=since)["executionInfos"]) == [
        "late",
        "middle",
    ]


def test_list_closed_executions_applies_the_close_time_filter(api, clock):
    """SWF API Reference: ListClosedWorkflowExecutions, closeTimeFilter (by close time, newest first; moto:
    ignored, and a terminated execution had no close time)."""
    close(api, "first")
    clock.advance(100)
    close(api, "second", "Terminate")
    clock.advance(100)
    close(api, "third")
    at = datetime.datetime.fromtimestamp
    window = {"oldestDate": at(1_700_000_050), "latestDate": at(1_700_000_150)}
    assert ids(api.list_closed_workflow_executions(domain="D", closeTimeFilter=window)["executionInfos"]) == ["second"]
    everything = api.list_closed_workflow_executions(domain="D", closeTimeFilter=EVER)["executionInfos"]
    assert ids(everything) == ["third", "second", "first"]
    assert all(info.get("closeTimestamp") for info in everything)


def test_list_executions_applies_the_tag_filter_to_every_execution(api):
    """SWF API Reference: ListOpenWorkflowExecutions, tagFilter (moto removed from the list it iterated: of two
    adjacent executions without the tag, one was listed)."""
    for i in range(8):
        run(api, f"w{i}", tagList=["keep" if i % 3 == 2 else "drop"])
    listed = api.list_open_workflow_executions(domain="D", startTimeFilter=EVER, tagFilter={"tag": "keep"})
    assert sorted(ids(listed["executionInfos"])) == ["w2", "w5"]


def test_list_closed_executions_applies_the_close_status_filter(api):
    """SWF API Reference: ListClosedWorkflowExecutions, closeStatusFilter (moto compared the filter, a dict, to a
    string, and removed from the list it iterated: 2 of 4 completed executions listed)."""
    for i in range(4):
        close(api, f"done{i}")
    close(api, "failed", "FailWorkflowExecution")
    close(api, "terminated", "Terminate")
    completed = api.list_closed_workflow_executions(
        domain="D", startTimeFilter=EVER, closeStatusFilter={"status": "COMPLETED"}
    )
    failed = api.list_closed_workflow_executions(
        domain="D", startTimeFilter=EVER, closeStatusFilter={"status": "FAILED"}
    )
    assert sorted(ids(completed["executionInfos"])) == ["done0", "done1", "done2", "done3"]
    assert ids(failed["executionInfos"]) == ["failed"]


def test_list_closed_executions_refuses_two_time_filters(api):
    """SWF API Reference: ListClosedWorkflowExecutions ("startTimeFilter and closeTimeFilter are mutually
    exclusive. You must specify one of these"): a validation error (moto: a TypeError, HTTP 500)."""
    with pytest.raises(ClientError) as both:
        api.list_closed_workflow_executions(domain="D", startTimeFilter=EVER, closeTimeFilter=EVER)
    with pytest.raises(ClientError) as two:
        api.list_closed_workflow_executions(
            domain="D", startTimeFilter=EVER, tagFilter={"tag": "x"}, executionFilter={"workflowId": "w"}
        )
    assert error_code(both) == error_code(two) == "ValidationException"


# -- 7. reverseOrder


def listing(api, call: str, **params) -> list:
    """The names an unpaged list call answers, in its order."""
    if call == "ListDomains":
        return [d["name"] for d in api.list_domains(registrationStatus="REGISTERED", **params)["domainInfos"]]
    if call == "ListWorkflowTypes":
        infos = api.list_workflow_types(domain="D", registrationStatus="REGISTERED", **params)["typeInfos"]
        return [i["workflowType"]["name"] for i in infos]
    if call == "ListActivityTypes":
        infos = api.list_activity_types(domain="D", registrationStatus="REGISTERED", **params)["typeInfos"]
        return [i["activityType"]["name"] for i in infos]
    if call == "ListOpenWorkflowExecutions":
        return ids(api.list_open_workflow_executions(domain="D", startTimeFilter=EVER, **params)["executionInfos"])
    if call == "ListClosedWorkflowExecutions":
        return ids(api.list_closed_workflow_executions(domain="D", startTimeFilter=EVER, **params)["executionInfos"])
    assert call == "GetWorkflowExecutionHistory"
    execution = api.list_closed_workflow_executions(domain="D", startTimeFilter=EVER)["executionInfos"][0]
    answer = api.get_workflow_execution_history(domain="D", execution=execution["execution"], **params)
    return [event["eventId"] for event in answer["events"]]


def populate(api, clock) -> None:
    """Three of each thing the list calls list, created in their ascending order."""
    for name in ("E1", "E2"):
        api.register_domain(name=name, workflowExecutionRetentionPeriodInDays="1")
    for name in ("X1", "X2"):
        api.register_workflow_type(domain="D", name=name, version="1")
        api.register_activity_type(domain="D", name=name, version="1")
    for i in range(3):
        run(api, f"open{i}")
        clock.advance(1)
    for i in range(3):
        close(api, f"closed{i}")  # the first has 5 events
        clock.advance(1)


#: SWF's default order of each list call: ascending by name (domains, types) or event id, newest first (executions).
DEFAULT_ORDERS = {
    "ListDomains": ["D", "E1", "E2"],
    "ListWorkflowTypes": ["W", "X1", "X2"],
    "ListActivityTypes": ["A", "X1", "X2"],
    "ListOpenWorkflowExecutions": ["open2", "open1", "open0"],
    "ListClosedWorkflowExecutions": ["closed2", "closed1", "closed0"],
}


@pytest.mark.parametrize("call", [*DEFAULT_ORDERS, "GetWorkflowExecutionHistory"])
def test_reverse_order_reverses_every_list_call(api, clock, call):
    """SWF API Reference: ListDomains, ListActivityTypes, ListWorkflowTypes, ListOpenWorkflowExecutions,
    ListClosedWorkflowExecutions, GetWorkflowExecutionHistory: reverseOrder ("When set to true, returns the
    results in reverse order"; moto: HTTP 500 on the executions' lists) of each one's documented default order."""
    populate(api, clock)
    forward = listing(api, call)
    if call in DEFAULT_ORDERS:
        assert forward == DEFAULT_ORDERS[call]
    else:
        assert forward == sorted(forward) and len(forward) > 3
    assert listing(api, call, reverseOrder=True) == forward[::-1]


# -- 7. paging


@pytest.mark.parametrize("call", [*DEFAULT_ORDERS, "GetWorkflowExecutionHistory"])
@pytest.mark.parametrize("reverse", [False, True])
def test_every_list_call_pages(api, clock, call, reverse):
    """SWF API Reference: ListDomains, ListActivityTypes, ListWorkflowTypes, ListOpenWorkflowExecutions,
    ListClosedWorkflowExecutions, GetWorkflowExecutionHistory: maximumPageSize and nextPageToken ("If a
    NextPageToken was returned by a previous call, there are more results available"; moto: one page of all).
    A page is never bigger than asked; the pages together are the whole list, in order, once."""
    populate(api, clock)
    whole = listing(api, call, reverseOrder=reverse)
    pages, token = [], None
    while True:
        extra = {"nextPageToken": token} if token else {}
        page = paged(api, call, maximumPageSize=2, reverseOrder=reverse, **extra)
        assert 1 <= len(page["items"]) <= 2
        pages.append(page["items"])
        token = page.get("token")
        if not token:
            break
        assert len(pages) < 10, "the pages never end"
    assert [item for chunk in pages for item in chunk] == whole
    assert len(pages) == (len(whole) + 1) // 2


def paged(api, call: str, **params) -> dict:
    """One page of a list call: {"items": names, "token": its nextPageToken}."""
    method = {
        "ListDomains": lambda: api.list_domains(registrationStatus="REGISTERED", **params),
        "ListWorkflowTypes": lambda: api.list_workflow_types(domain="D", registrationStatus="REGISTERED", **params),
        "ListActivityTypes": lambda: api.list_activity_types(domain="D", registrationStatus="REGISTERED", **params),
        "ListOpenWorkflowExecutions": lambda: api.list_open_workflow_executions(
            domain="D", startTimeFilter=EVER, **params
        ),
        "ListClosedWorkflowExecutions": lambda: api.list_closed_workflow_executions(
            domain="D", startTimeFilter=EVER, **params
        ),
    }
    if call == "GetWorkflowExecutionHistory":
        execution = api.list_closed_workflow_executions(domain="D", startTimeFilter=EVER)["executionInfos"][0]
        got = api.get_workflow_execution_history(domain="D", execution=execution["execution"], **params)
        return {"items": [e["eventId"] for e in got["events"]], "token": got.get("nextPageToken")}
    got = method[call]()
    key = {"ListDomains": "domainInfos", "ListWorkflowTypes": "typeInfos", "ListActivityTypes": "typeInfos"}.get(
        call, "executionInfos"
    )
    if key == "typeInfos":
        items = [i[f"{'workflow' if 'Workflow' in call else 'activity'}Type"]["name"] for i in got[key]]
    elif key == "domainInfos":
        items = [d["name"] for d in got[key]]
    else:
        items = ids(got[key])
    return {"items": items, "token": got.get("nextPageToken")}


def test_a_page_holds_at_most_1000_by_default(api):
    """SWF API Reference: ListDomains, maximumPageSize ("The default is 1000, which is the maximum allowed page
    size"): 1001 domains make two pages (moto: every domain in one answer)."""
    swf = moto_backend()
    with emulator.current().lock:
        for i in range(1000):
            swf.register_domain(f"many{i:04}", "1")
    first = api.list_domains(registrationStatus="REGISTERED")
    assert len(first["domainInfos"]) == 1000 and first.get("nextPageToken")
    rest = api.list_domains(registrationStatus="REGISTERED", nextPageToken=first["nextPageToken"])
    assert len(rest["domainInfos"]) == 1 and not rest.get("nextPageToken")


def test_a_page_token_of_another_call_is_refused(api):
    """SWF API Reference: ListOpenWorkflowExecutions, nextPageToken ("The nextPageToken ... is opaque"; the
    token of another call, or garbage, is a validation error)."""
    for i in range(3):
        run(api, f"w{i}")
    token = api.list_open_workflow_executions(domain="D", startTimeFilter=EVER, maximumPageSize=1)["nextPageToken"]
    with pytest.raises(ClientError) as other:
        api.list_domains(registrationStatus="REGISTERED", nextPageToken=token)
    with pytest.raises(ClientError) as garbage:
        api.list_domains(registrationStatus="REGISTERED", nextPageToken="not a token")
    assert error_code(other) == error_code(garbage) == "ValidationException"


# -- 7. counts


def test_count_open_executions_applies_the_filters(api):
    """SWF API Reference: CountOpenWorkflowExecutions (startTimeFilter, and executionFilter, typeFilter or
    tagFilter; "truncated": false; moto: no such call)."""
    for i in range(5):
        run(api, f"w{i}", tagList=["even" if i % 2 == 0 else "odd"])
    total = api.count_open_workflow_executions(domain="D", startTimeFilter=EVER)
    even = api.count_open_workflow_executions(domain="D", startTimeFilter=EVER, tagFilter={"tag": "even"})
    one = api.count_open_workflow_executions(domain="D", startTimeFilter=EVER, executionFilter={"workflowId": "w3"})
    assert (total["count"], even["count"], one["count"]) == (5, 3, 1)
    assert total["truncated"] is False


def test_count_closed_executions_applies_the_filters(api):
    """SWF API Reference: CountClosedWorkflowExecutions (a start or close time filter, and closeStatusFilter
    among others; moto: no such call)."""
    for i in range(3):
        close(api, f"done{i}")
    close(api, "failed", "FailWorkflowExecution")
    run(api, "open")
    total = api.count_closed_workflow_executions(domain="D", closeTimeFilter=EVER)
    failed = api.count_closed_workflow_executions(
        domain="D", startTimeFilter=EVER, closeStatusFilter={"status": "FAILED"}
    )
    assert (total["count"], failed["count"], total["truncated"]) == (4, 1, False)


# -- 7. timers and cancels


def test_a_canceled_timer_records_timer_canceled(api):
    """SWF API Reference: HistoryEvent, eventType TimerCanceled (moto: TimerCancelled, which no SWF client knows)."""
    execution = run(api, "w")
    answer(api, [{"decisionType": "StartTimer",
                  "startTimerDecisionAttributes": {"timerId": "t", "startToFireTimeout": "3600"}}])  # fmt: skip
    api.signal_workflow_execution(domain="D", workflowId="w", signalName="cancel it", input="")
    answer(api, [{"decisionType": "CancelTimer", "cancelTimerDecisionAttributes": {"timerId": "t"}}])
    [canceled] = [e for e in history(api, execution) if e["eventType"].startswith("TimerCancel")]
    assert canceled["eventType"] == "TimerCanceled"
    assert canceled["timerCanceledEventAttributes"]["timerId"] == "t"


def test_request_cancel_records_the_request_and_schedules_a_decision_task(api):
    """SWF API Reference: RequestCancelWorkflowExecution ("records a WorkflowExecutionCancelRequested event in the
    currently running workflow execution"; the decider then decides; moto: no such call)."""
    execution = run(api, "w")
    answer(api, [])
    api.request_cancel_workflow_execution(domain="D", workflowId="w")
    assert types_of(api, execution)[-2:] == ["WorkflowExecutionCancelRequested", "DecisionTaskScheduled"]
    described = api.describe_workflow_execution(domain="D", execution=execution)
    assert described["executionInfo"]["cancelRequested"] is True
    answer(api, [{"decisionType": "CancelWorkflowExecution"}])
    closed = api.describe_workflow_execution(domain="D", execution=execution)["executionInfo"]
    assert closed["executionStatus"] == "CLOSED" and closed["closeStatus"] == "CANCELED"
    with pytest.raises(ClientError) as late:
        api.request_cancel_workflow_execution(domain="D", workflowId="w", runId=execution["runId"])
    assert error_code(late) == "UnknownResourceFault"


def test_a_cancel_decision_fails_when_events_came_while_its_task_was_in_hand(api):
    """SWF API Reference: CancelWorkflowExecutionFailedEventAttributes, cause UNHANDLED_DECISION (new events
    since the decision task started: the decider must see them first)."""
    execution = run(api, "w")
    task = api.poll_for_decision_task(domain="D", taskList={"name": "decide"})
    api.signal_workflow_execution(domain="D", workflowId="w", signalName="meanwhile", input="")
    api.respond_decision_task_completed(taskToken=task["taskToken"],
                                        decisions=[{"decisionType": "CancelWorkflowExecution"}])  # fmt: skip
    assert types_of(api, execution)[-2:] == ["CancelWorkflowExecutionFailed", "DecisionTaskScheduled"]
    info = api.describe_workflow_execution(domain="D", execution=execution)["executionInfo"]
    assert info["executionStatus"] == "OPEN"


def schedule_a1() -> dict:
    return {"decisionType": "ScheduleActivityTask",
            "scheduleActivityTaskDecisionAttributes": {"activityId": "a1", "activityType": {"name": "A", "version": "1"}}}  # fmt: skip


CANCEL_A1 = {"decisionType": "RequestCancelActivityTask", "requestCancelActivityTaskDecisionAttributes": {"activityId": "a1"}}  # fmt: skip


def test_a_started_activity_learns_of_its_cancel_from_its_heartbeat_and_answers_canceled(api):
    """SWF API Reference: RecordActivityTaskHeartbeat ("cancelRequested: Set to true if cancellation of the task is
    requested"; moto: always false) after a RequestCancelActivityTask decision (ActivityTaskCancelRequested), and
    RespondActivityTaskCanceled (ActivityTaskCanceled, and a decision task; moto: no such call)."""
    execution = run(api, "w")
    answer(api, [schedule_a1()])
    task = api.poll_for_activity_task(domain="D", taskList={"name": "work"})
    assert api.record_activity_task_heartbeat(taskToken=task["taskToken"])["cancelRequested"] is False
    api.signal_workflow_execution(domain="D", workflowId="w", signalName="stop it", input="")
    answer(api, [CANCEL_A1])
    assert types_of(api, execution)[-1] == "ActivityTaskCancelRequested"
    assert api.record_activity_task_heartbeat(taskToken=task["taskToken"])["cancelRequested"] is True
    api.respond_activity_task_canceled(taskToken=task["taskToken"], details="undone")
    events_now = history(api, execution)
    assert [e["eventType"] for e in events_now][-2:] == ["ActivityTaskCanceled", "DecisionTaskScheduled"]
    attributes = events_now[-2]["activityTaskCanceledEventAttributes"]
    assert attributes["details"] == "undone" and attributes["latestCancelRequestedEventId"] > 0
    info = api.describe_workflow_execution(domain="D", execution=execution)
    assert info["openCounts"]["openActivityTasks"] == 0


def test_a_cancel_of_an_activity_still_scheduled_cancels_it_at_once(api):
    """SWF API Reference: RequestCancelActivityTaskDecisionAttributes, and the Developer Guide's Canceling
    activity tasks (a task not yet started is canceled at once: ActivityTaskCanceled; moto: NotImplementedError
    after the decision task was completed, the execution stuck)."""
    execution = run(api, "w")
    answer(api, [schedule_a1()])
    api.signal_workflow_execution(domain="D", workflowId="w", signalName="never mind", input="")
    answer(api, [CANCEL_A1])
    assert types_of(api, execution)[-3:] == ["ActivityTaskCancelRequested", "ActivityTaskCanceled",
                                             "DecisionTaskScheduled"]  # fmt: skip
    assert api.count_pending_activity_tasks(domain="D", taskList={"name": "work"})["count"] == 0
    answer(api, [{"decisionType": "CompleteWorkflowExecution"}])
    info = api.describe_workflow_execution(domain="D", execution=execution)["executionInfo"]
    assert info["closeStatus"] == "COMPLETED"


def test_a_cancel_of_an_unknown_activity_fails_as_a_decision(api):
    """SWF API Reference: RequestCancelActivityTaskFailedEventAttributes, cause ACTIVITY_ID_UNKNOWN."""
    execution = run(api, "w")
    answer(api, [CANCEL_A1])
    assert types_of(api, execution)[-2:] == ["RequestCancelActivityTaskFailed", "DecisionTaskScheduled"]


def test_a_decision_the_endpoint_cannot_carry_out_is_refused_before_the_task_completes(api):
    """SWF API Reference: RespondDecisionTaskCompleted (the decisions are carried out whole or not at all). The
    local endpoint has no ContinueAsNew nor child workflows: refused, the task still in hand (moto: completed,
    then NotImplementedError, the execution stuck)."""
    execution = run(api, "w")
    task = api.poll_for_decision_task(domain="D", taskList={"name": "decide"})
    with pytest.raises(ClientError) as refused:
        api.respond_decision_task_completed(
            taskToken=task["taskToken"], decisions=[{"decisionType": "ContinueAsNewWorkflowExecution"}]
        )
    assert error_code(refused) == "ValidationException"
    api.respond_decision_task_completed(taskToken=task["taskToken"],
                                        decisions=[{"decisionType": "CompleteWorkflowExecution"}])  # fmt: skip
    assert types_of(api, execution)[-1] == "WorkflowExecutionCompleted"


def test_a_type_is_deleted_once_deprecated(api):
    """SWF API Reference: DeleteActivityType ("You cannot delete a type that is still registered"; Errors:
    TypeNotDeprecatedFault), DeleteWorkflowType (moto: no such calls)."""
    with pytest.raises(ClientError) as registered:
        api.delete_activity_type(domain="D", activityType={"name": "A", "version": "1"})
    assert error_code(registered) == "TypeNotDeprecatedFault"
    api.deprecate_activity_type(domain="D", activityType={"name": "A", "version": "1"})
    api.delete_activity_type(domain="D", activityType={"name": "A", "version": "1"})
    api.deprecate_workflow_type(domain="D", workflowType={"name": "W", "version": "1"})
    api.delete_workflow_type(domain="D", workflowType={"name": "W", "version": "1"})
    for status in ("REGISTERED", "DEPRECATED"):
        assert api.list_activity_types(domain="D", registrationStatus=status)["typeInfos"] == []
        assert api.list_workflow_types(domain="D", registrationStatus=status)["typeInfos"] == []
    with pytest.raises(ClientError) as gone:
        api.describe_activity_type(domain="D", activityType={"name": "A", "version": "1"})
    assert error_code(gone) == "UnknownResourceFault"


# -- over the wire


@pytest.mark.e2e
def test_the_endpoint_pages_and_reverses_executions_over_http(endpoint):
    """SWF API Reference: ListClosedWorkflowExecutions, reverseOrder, maximumPageSize and nextPageToken, on the
    embedded endpoint's HTTP server (moto: HTTP 500 on reverseOrder, one page of all)."""
    client = boto3.client("swf", endpoint_url=endpoint.url, region_name=REGION)
    client.register_domain(name="Wire", workflowExecutionRetentionPeriodInDays="1")
    client.register_workflow_type(domain="Wire", name="W", version="1", defaultTaskList={"name": "decide"},
                                  defaultTaskStartToCloseTimeout="10", defaultExecutionStartToCloseTimeout="3600",
                                  defaultChildPolicy="TERMINATE")  # fmt: skip
    for i in range(5):
        client.start_workflow_execution(domain="Wire", workflowId=f"w{i}", workflowType={"name": "W", "version": "1"})
        client.terminate_workflow_execution(domain="Wire", workflowId=f"w{i}")
    seen, token = [], None
    while True:
        extra = {"nextPageToken": token} if token else {}
        got = client.list_closed_workflow_executions(
            domain="Wire", closeTimeFilter=EVER, reverseOrder=True, maximumPageSize=2, **extra
        )
        assert len(got["executionInfos"]) <= 2
        seen += ids(got["executionInfos"])
        token = got.get("nextPageToken")
        if not token:
            break
    assert seen == [f"w{i}" for i in range(5)]
    counted = client.count_closed_workflow_executions(
        domain="Wire", closeTimeFilter=EVER, closeStatusFilter={"status": "TERMINATED"}
    )
    assert counted["count"] == 5
