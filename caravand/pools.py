"""The built-in pool factories: ``use = egg:caravand#decider`` and ``egg:caravand#activity``.

A pool factory is called by the master when it reads the ini, with the
``[DEFAULT]`` values and the section's own keys (those that are not common
pool settings such as ``processes``). It validates them and returns a
:class:`caravand.contracts.PoolFactory`: ``make_poller(endpoint, *, domain,
task_list, identity, hooks)``, which each child calls after fork, and here
all its optional members (``kind``, ``preload``, ``register_types``,
``register``). ``use = call:mypkg.mod:factory`` plugs in a framework of
one's own the same way.
"""

from __future__ import annotations

import importlib.util

from caravand import registration, swf
from caravand.activity import Activity
from caravand.activity_worker import ActivityWorker
from caravand.config import parse_bool, parse_count
from caravand.contracts import PollerLike, PoolFactory
from caravand.decider import MAX_DECISION_RETRIES, Decider, check_on_error
from caravand.loader import IMPORT_HINT, add_to_sys_path, load_classes, searched
from caravand.poller import Hooks, Poller
from caravand.swf import ConfigError, flatten
from caravand.workflow import Workflow


def split_modules(modules: str) -> list[str]:
    """The module names; each one's top-level package must be findable (nothing is imported here).

    Only the top level is looked up: finding ``pkg.mod`` would import
    ``pkg``, and the master imports no module of the user's (unless
    ``preload``). Whether each module imports and defines classes is
    checked in a throwaway child (caravand.loader.check_imports_in_child).
    """
    names = modules.split()
    if not names:
        raise ConfigError("modules: missing (the modules that define the pool's classes)")
    for name in names:
        top = name.partition(".")[0]
        try:
            found = importlib.util.find_spec(top)
        except Exception as exc:  # a malformed name, or a module whose spec is broken
            raise ConfigError(f"modules: cannot import {name!r}: {type(exc).__name__}: {flatten(exc)}") from None
        if found is None:
            missing = repr(top) if top == name else f"{top!r} (of {name!r})"
            raise ConfigError(f"modules: no module named {missing} (searched: {searched(top)}): {IMPORT_HINT}")
    return names


def register_flag(register: str) -> bool:
    try:
        return parse_bool(register)
    except ValueError as exc:
        raise ConfigError(f"register = {register!r}: {exc}") from None


class ModulesPool:
    """A pool of Decider or ActivityWorker children serving the classes of some modules.

    ``pythonpath``: the pool's directories (caravand.config sets them),
    put first on ``sys.path`` before the modules are imported: in the
    master with preload, in each child, and in the registrar.
    """

    pythonpath: tuple = ()

    def __init__(self, kind: str, poller_class, base, modules: list[str], register: bool, **poller_options):
        self.kind = kind
        self.poller_class = poller_class
        self.base = base
        self.modules = modules
        self.register = register
        self.poller_options = poller_options

    def __repr__(self):
        return f"<{self.kind} pool of {' '.join(self.modules)}>"

    def classes(self) -> dict:
        add_to_sys_path(self.pythonpath)
        return load_classes(self.modules, self.base)

    def preload(self) -> None:
        """Import the modules now (in the master, before fork), so children share them."""
        self.classes()

    def register_types(self, client, domain) -> None:
        """Register the modules' types (if the pool's ``register`` says so): the master's registrar calls it."""
        if self.register:
            kind = "workflow" if self.base is Workflow else "activity"
            registration.register_types(client, domain, kind, self.classes().values())

    def make_poller(
        self, endpoint: swf.Endpoint, *, domain: str, task_list: str, identity: str, hooks: Hooks
    ) -> Poller:
        # register=False: the master registers once per pool (register_types
        # above, in a throwaway process), so a child boots without calling SWF.
        return self.poller_class(
            endpoint,
            domain,
            task_list,
            self.classes(),
            identity=identity,
            hooks=hooks,
            register=False,
            **self.poller_options,
        )


# The built-in pools are the model of the contracts: mypy checks that they meet them.
_MEETS_CONTRACTS: tuple[type[PoolFactory], type[PollerLike]] = (ModulesPool, Poller)


def decider(global_conf, modules, on_error="retry", register="true", max_decision_retries=str(MAX_DECISION_RETRIES)):
    """``use = egg:caravand#decider``: deciders running the Workflow classes of ``modules``."""
    check_on_error(on_error)
    try:
        retries = parse_count(max_decision_retries)
    except ValueError as exc:
        raise ConfigError(f"max_decision_retries = {max_decision_retries!r}: {exc}") from None
    return ModulesPool(
        "decider",
        Decider,
        Workflow,
        split_modules(modules),
        register_flag(register),
        on_error=on_error,
        max_decision_retries=retries,
    )


def activity(global_conf, modules, register="true"):
    """``use = egg:caravand#activity``: activity workers running the Activity classes of ``modules``."""
    return ModulesPool("activity", ActivityWorker, Activity, split_modules(modules), register_flag(register))
