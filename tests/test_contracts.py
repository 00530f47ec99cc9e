"""The plug-in contracts (caravand.contracts): what stands for a missing optional member, and the one probe."""

from __future__ import annotations

import types

import pytest

from caravand import contracts
from caravand.activity_worker import ActivityWorker
from caravand.examples.greeting_activities import Greet
from caravand.pools import ModulesPool, activity
from caravand.swf import Endpoint


class OwnPool:
    """A ``call:`` factory's result with the required member only."""

    def make_poller(self, endpoint, *, domain, task_list, identity, hooks):
        return OwnPoller()


class OwnPoller:
    """A poller of one's own: its ``start()`` takes no session."""

    def __init__(self):
        self.started = 0

    def start(self):
        self.started += 1

    def run_forever(self):
        pass

    def stop(self):
        pass


def test_a_factory_of_ones_own_lacks_every_optional_member_and_gets_what_stands_for_it():
    own = OwnPool()
    assert contracts.optional(own, "kind") == "pool"
    assert contracts.optional(own, "preload") is None
    assert contracts.optional(own, "register_types") is None
    assert contracts.optional(own, "register") is True
    poller = OwnPoller()
    assert contracts.optional(poller, "abortable") is False
    assert contracts.optional(poller, "wait_for_answer") is None
    assert contracts.optional(poller, "fail_task_in_hand") is None


def test_the_built_in_pools_have_every_optional_member():
    pool = activity({}, "caravand.examples.greeting_activities", register="false")
    assert isinstance(pool, ModulesPool)
    assert contracts.optional(pool, "kind") == "activity"
    assert contracts.optional(pool, "preload") == pool.preload
    assert contracts.optional(pool, "register_types") == pool.register_types
    assert contracts.optional(pool, "register") is False
    worker = ActivityWorker(Endpoint(region="us-east-1"), "D", "t", [Greet])
    assert contracts.optional(worker, "abortable") is False  # True only inside the long poll
    assert contracts.optional(worker, "wait_for_answer") == worker.wait_for_answer
    assert contracts.optional(worker, "fail_task_in_hand") == worker.fail_task_in_hand


def test_a_member_the_contracts_do_not_name_is_refused_not_read():
    with pytest.raises(KeyError):
        contracts.optional(OwnPool(), "preloads")  # a typo must not read as "missing"


@pytest.mark.parametrize(
    "made, expected",
    [
        (OwnPool(), True),
        (object(), False),
        (types.SimpleNamespace(make_poller="not callable"), False),
    ],
)
def test_a_pool_factory_has_a_callable_make_poller(made, expected):
    assert contracts.is_pool_factory(made) is expected


def test_only_caravands_own_poller_gets_the_masters_session():
    own = OwnPoller()
    contracts.start_poller(own, session=object())  # its start() takes no argument
    assert own.started == 1

    started = []

    class Recording(ActivityWorker):
        def start(self, session=None):
            started.append(session)

    session = object()
    contracts.start_poller(Recording(Endpoint(region="us-east-1"), "D", "t", [Greet]), session)
    contracts.start_poller(Recording(Endpoint(region="us-east-1"), "D", "t", [Greet]), None)
    assert started == [session, None]


def test_a_child_polls_on_the_client_the_master_built_before_fork(monkeypatch):
    """With preload, building the poll client cost each restarted child ~9 ms: the master builds it once."""
    from caravand import swf

    built = []
    real = swf.make_client

    def counting(*args, **kwargs):
        built.append(kwargs.get("poll", False))
        return real(*args, **kwargs)

    endpoint = Endpoint(region="us-east-1")
    session = swf.make_session(endpoint)
    prebuilt = real(endpoint, poll=True, session=session)
    monkeypatch.setattr(swf, "make_client", counting)
    worker = ActivityWorker(endpoint, "D", "t", [Greet], register=False)
    contracts.start_poller(worker, session, prebuilt)
    assert worker.poll_client is prebuilt and True not in built  # no poll client built in the child
    alone = ActivityWorker(endpoint, "D", "t", [Greet], register=False)
    contracts.start_poller(alone, session)
    assert alone.poll_client is not prebuilt and built == [True]  # without preload: its own
