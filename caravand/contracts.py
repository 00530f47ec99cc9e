"""The plug-in contracts, stated once: a pool factory, the poller it makes, and what the master does with each.

A ``[pool:NAME]`` section's ``use`` names a factory function
(``egg:caravand#decider``, ``call:mypkg.mod:factory``). The master calls it
with the ini's values as it reads the ini, and keeps what it returns: a
:class:`PoolFactory`. Each child calls its ``make_poller`` after fork and
runs the :class:`PollerLike` it returns. caravand's own
(caravand.pools.ModulesPool, caravand.poller.Poller) have every member; a
factory or poller of one's own needs only the required ones.

An optional member is read through :func:`optional` alone, which gives what
stands for a missing one: the behaviour each docstring below describes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeGuard, overload

from caravand.poller import Hooks, Poller

if TYPE_CHECKING:
    import boto3

    from caravand import swf


class PollerLike(Protocol):
    """What a child runs: ``start()``, then ``run_forever()`` until ``stop()``.

    Required:

    ``start()``
        Build the clients (after fork: never in ``__init__``). caravand's own
        :class:`~caravand.poller.Poller` also takes ``session=``, the boto3
        session the master warmed before fork (with ``preload``), and
        ``poll_client=``, the poll client the master built from it, and gets
        them (:func:`start_poller`); a poller of one's own is started with no
        argument. If it raises, the child logs ``failed to boot``, tells the
        master why (FAILED) and exits 3: a failed start of its pool, which
        backs off, then goes FATAL after ``max_restarts``.
    ``run_forever()``
        Poll and handle tasks until ``stop()``, then return; the child exits
        0. A return the master did not ask for counts as a crash, and the
        child is replaced. :class:`~caravand.poller.PollerGaveUp` is a failed
        start (as above); any other exception is logged, the child exits 1:
        a crash.
    ``stop()``
        Called from a signal handler (TERM, QUIT, the orphan signal): it
        only sets flags, and is safe to call twice. A poller still running
        as the stop's deadline (``graceful_timeout``) comes gets SIGALRM
        ALARM_MARGIN before it (see ``fail_task_in_hand``), then SIGKILL.

    Optional (read through :func:`optional`):

    ``abortable: bool``
        True only inside the long poll, before any task is in hand: a QUIT
        (a fast stop) then abandons the poll at once. Missing: False, and a
        QUIT waits for ``run_forever()`` to return, as a TERM does.
    ``wait_for_answer(timeout: float) -> bool``
        At the stop's deadline (SIGALRM, ALARM_MARGIN before the SIGKILL),
        wait up to ``timeout`` s for an answer of finished work still being
        sent; False if one is left (logged, and the child goes on). Missing:
        no wait.
    ``fail_task_in_hand(reason: str) -> object``
        Then fail the task in hand with ``reason`` (``worker-shutdown``), so
        that SWF retries it at once; an exception is logged. Missing: a task
        in hand waits for its timeout in SWF. Either way the child then
        exits 0, before the SIGKILL.
    """

    def start(self) -> None: ...

    def run_forever(self) -> None: ...

    def stop(self) -> None: ...


class PoolFactory(Protocol):
    """What a pool's ``use`` factory returns: the maker of each child's poller.

    Required:

    ``make_poller(endpoint, *, domain, task_list, identity, hooks) -> PollerLike``
        Called in each child after fork. ``hooks`` is the child's
        :class:`~caravand.poller.Hooks` (its reporter to the master): a
        poller that never calls them still runs, kept alive by the child's
        beat thread, but the master then knows no deadline to hold it to (a
        hung task is never found) and counts no task (``max_tasks`` never
        recycles it). If ``make_poller`` raises, it is a failed start (see
        :class:`PollerLike` ``start()``). A factory whose result has no
        callable ``make_poller`` is refused as the ini is read: a
        ConfigError naming the section (caravand exits 78; a reload is
        refused and the running pools stay).

    Optional (read through :func:`optional`):

    ``kind: str``
        What the pool is, in the children's process titles and ``caravand
        --check``. Missing: ``pool``.
    ``preload() -> None``
        Import the pool's modules: in a throwaway process at start,
        ``--check`` and each reload (an exception refuses the start or the
        reload with a ConfigError naming the pool), and in the master before
        fork with ``preload = true`` (a CaravanError is logged there, and
        the children try again). Missing: the master imports nothing of the
        pool's; its children find out as they boot.
    ``register_types(client, domain: str) -> None``
        Register the pool's types, in the master's registrar (a throwaway
        process, once per pool and version, throttling retried until its
        deadline). An exception is a failed registration, logged and tried
        again with backoff; the children serve meanwhile. It is called
        whatever ``register`` says: honouring it is the factory's business.
        Missing: no registration of types.
    ``register: bool``
        False: ``register_types`` does nothing, so no registrar is forked for
        it (one still is for the domain, with ``register_domains``).
        Missing: True.
    """

    def make_poller(
        self, endpoint: swf.Endpoint, *, domain: str, task_list: str, identity: str, hooks: Hooks
    ) -> PollerLike: ...


#: What stands for a missing optional member: what the master does without it (see the Protocols above).
MISSING: dict[str, Any] = {
    "kind": "pool",
    "preload": None,
    "register_types": None,
    "register": True,
    "abortable": False,
    "wait_for_answer": None,
    "fail_task_in_hand": None,
}


@overload
def optional(plugin: PoolFactory, member: Literal["kind"]) -> str: ...
@overload
def optional(plugin: PoolFactory, member: Literal["preload"]) -> Callable[[], None] | None: ...
@overload
def optional(plugin: PoolFactory, member: Literal["register_types"]) -> Callable[[Any, str], None] | None: ...
@overload
def optional(plugin: PoolFactory, member: Literal["register"]) -> bool: ...
@overload
def optional(plugin: PollerLike, member: Literal["abortable"]) -> bool: ...
@overload
def optional(plugin: PollerLike, member: Literal["wait_for_answer"]) -> Callable[[float], bool] | None: ...
@overload
def optional(plugin: PollerLike, member: Literal["fail_task_in_hand"]) -> Callable[[str], object] | None: ...
def optional(plugin: object, member: str) -> Any:
    """``plugin``'s optional ``member``, or what stands for a missing one (``MISSING``).

    The one probe of the contracts: a ``call:`` factory of one's own, or its
    poller, may lack any of these members, and the master must not care.
    """
    return getattr(plugin, member, MISSING[member])


def is_pool_factory(made: object) -> TypeGuard[PoolFactory]:
    """Whether a factory's result can make pollers: it has a callable ``make_poller``."""
    return callable(getattr(made, "make_poller", None))


def start_poller(poller: PollerLike, session: boto3.Session | None, poll_client=None) -> None:
    """``poller.start()``; caravand's own :class:`~caravand.poller.Poller` also gets the master's warmed
    ``session`` and the poll client it built before fork, if any."""
    if session is not None and isinstance(poller, Poller):
        poller.start(session=session, **({"poll_client": poll_client} if poll_client is not None else {}))
    else:
        poller.start()
