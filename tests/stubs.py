"""Test doubles of the poll loops: offline SWF clients under botocore's Stubber, recording hooks.

Shared by the tests of the ActivityWorker, of the Decider and of the
authoring APIs (``from stubs import ...``, as ``from helpers import ...``).
Nothing here leaves the process: a stubbed client answers from its queue.
"""

from __future__ import annotations

import datetime
from unittest import mock

import boto3
from botocore.stub import Stubber
from helpers import FakeClock

from caravand import swf
from caravand.poller import Hooks

#: A loopback port nothing listens on: a stubbed client never sends.
NOWHERE = "http://127.0.0.1:9"
#: One session for every stubbed client: a new session costs ~50 ms, a client from it ~4 ms.
SESSION = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


def offline_client(poll: bool = False):
    """A client for a loopback port nothing listens on: with a Stubber it never sends."""
    return swf.make_client(swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"), poll=poll, session=SESSION)


# -- histories

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def event(event_id: int, event_type: str, **attributes) -> dict:
    """A history event as SWF sends it: its attributes under ``<eventType>EventAttributes``."""
    return {
        "eventId": event_id,
        "eventType": event_type,
        "eventTimestamp": T0 + datetime.timedelta(seconds=event_id),
        f"{event_type[0].lower()}{event_type[1:]}EventAttributes": attributes,
    }


# -- hooks


class RecordingHooks(Hooks):
    """Hooks that record the tasks a poller starts and ends, in order, in ``calls``.

    A task is named by its attribute ``key`` (``token`` unless told):
    ``("task_started", name, deadline)``, ``("task_ended", name, outcome, seconds)``.
    ``on_task_ended(poller)``, when set, runs after each task ends.
    """

    def __init__(self, key: str = "token"):
        self.key = key
        self.calls: list[tuple] = []
        self.on_task_ended = None

    def task_started(self, poller, task, deadline):
        self.calls.append(("task_started", getattr(task, self.key), deadline))

    def task_ended(self, poller, task, outcome, seconds):
        self.calls.append(("task_ended", getattr(task, self.key), outcome, seconds))
        if self.on_task_ended:
            self.on_task_ended(poller)

    def outcomes(self) -> list[str]:
        return [call[2] for call in self.calls if call[0] == "task_ended"]


class PollRecordingHooks(RecordingHooks):
    """RecordingHooks that record the polls too, between the tasks in ``calls``.

    ``("poll_started", deadline)``, ``("poll_ended", got_task, seconds)``,
    ``("poll_failed", error code, throttled)``. ``on_poll_ended(poller)``,
    when set, runs as each poll returns.
    """

    def __init__(self, key: str = "token"):
        super().__init__(key)
        self.on_poll_ended = None

    def poll_started(self, poller, deadline):
        self.calls.append(("poll_started", deadline))

    def poll_ended(self, poller, got_task, seconds):
        self.calls.append(("poll_ended", got_task, seconds))
        if self.on_poll_ended:
            self.on_poll_ended(poller)

    def poll_failed(self, poller, error, throttled):
        self.calls.append(("poll_failed", getattr(error, "code", None), throttled))


# -- a poller on stubbed clients


class StubbedPoller:
    """A poller (of ``poller_class``) on two Stubber'd clients, a FakeClock and the given hooks.

    It serves ``types`` on ``task_list`` of domain "D", its jitter fixed at
    1.0 (``rng``). ``poll_stub`` answers its polls (``poll_operation``; an
    empty poll answers ``empty_poll``), ``stub`` its other calls; ``calls``
    lists every API call made through either, in order, as (operation, params).
    Subclasses name the poller class and what it polls for.
    """

    poll_operation: str
    empty_poll: dict

    def __init__(self, poller_class, task_list: str, types, *, identity: str, hooks: Hooks, **kwargs):
        self.fake = FakeClock()
        self.hooks = hooks
        self.calls: list[tuple[str, dict]] = []
        self.poller = poller_class(
            swf.Endpoint(endpoint_url=NOWHERE, region="us-east-1"),
            "D",
            task_list,
            types,
            identity=identity,
            hooks=hooks,
            clock=self.fake,
            sleep=self.fake.sleep,
            rng=lambda: 1.0,
            **kwargs,
        )
        self.poller.poll_client, self.poll_stub = self._stubbed(poll=True)
        self.poller.client, self.stub = self._stubbed(poll=False)

    def _stubbed(self, poll: bool):
        client = offline_client(poll)

        def record(params, model, **kwargs):
            self.calls.append((model.name, dict(params)))

        client.meta.events.register_first("before-parameter-build.swf", record)
        stub = Stubber(client)
        stub.activate()
        return client, stub

    def add_poll(self, response: dict):
        self.poll_stub.add_response(self.poll_operation, response)

    def add_empty_poll(self):
        # SWF's empty poll has no taskToken, which botocore's model calls required.
        with mock.patch.object(self.poll_stub, "_validate_operation_response"):
            self.poll_stub.add_response(self.poll_operation, dict(self.empty_poll))

    def add_poll_error(self, code: str, status: int = 400):
        self.poll_stub.add_client_error(self.poll_operation, service_error_code=code, http_status_code=status)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def assert_done(self):
        self.poll_stub.assert_no_pending_responses()
        self.stub.assert_no_pending_responses()


# -- scripted failures: a client double (an HTTP endpoint on 127.0.0.1: endpoints.ScriptedEndpoint)


def client_error(code: str, status: int = 400, operation: str = "RecordActivityTaskHeartbeat", message: str = "boom"):
    """The ClientError botocore raises for an SWF error answer (``code`` with HTTP ``status``)."""
    import botocore.exceptions

    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, operation)


class ScriptedClient:
    """A stand-in for an SWF client whose calls answer from ``script``, in order; ``calls`` records them.

    Each step is a response dict, an exception to raise, or a callable
    ``step(params)`` returning either. When the script runs out, ``then``
    (a step) answers every further call. ``meta`` is just enough for
    :func:`caravand.swf.call` to name the operation.
    """

    def __init__(self, *script, then=None):
        self.script = list(script)
        self.then = then
        self.calls: list[tuple[str, dict]] = []
        self.meta = mock.Mock(method_to_api_mapping={})

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(**params):
            self.calls.append((method, params))
            step = self.script.pop(0) if self.script else self.then
            if step is None:
                raise AssertionError(f"unexpected call: {method}({params})")
            if callable(step) and not isinstance(step, type):
                step = step(params)
            if isinstance(step, BaseException):
                raise step
            return step

        return call
