"""Registering workflow and activity types with SWF when a poller starts.

Under the daemon, a pool's domain and types are registered by a throwaway
process the master forks once per pool and version (see
:func:`register_pool`); the children boot without calling SWF.

Registration is idempotent: a type that already exists is described and its
defaults compared with the class's; a difference (drift) is logged, since SWF
never changes a registered type's defaults (bump the version for that).
"""

from __future__ import annotations

import logging
import random
import time

from caravand import swf
from caravand.contracts import optional

log = logging.getLogger(__name__)

_KINDS = {
    # kind: (register method, describe method, type key of describe, config key)
    "workflow": ("register_workflow_type", "describe_workflow_type", "workflowType", "configuration"),
    "activity": ("register_activity_type", "describe_activity_type", "activityType", "configuration"),
}


def type_registration(cls, defaults: dict[str, str]) -> dict:
    """Register*Type parameters of a Workflow or Activity class: name, version, description, defaults.

    ``defaults`` maps the class attributes to SWF's parameter names
    (``workflow.WORKFLOW_DEFAULTS``, ``activity.ACTIVITY_DEFAULTS``).
    """
    params = {"name": cls.name, "version": cls.version, "description": cls.description}
    for attribute, param in defaults.items():
        value = getattr(cls, attribute)
        if value is not None:
            params[param] = {"name": value} if param == "defaultTaskList" else str(value)
    return {k: v for k, v in params.items() if v is not None}


def drift(wanted: dict, configuration: dict) -> list[str]:
    """The defaults where the registered ``configuration`` differs from ``wanted``."""
    differences = []
    for key, value in wanted.items():
        if not key.startswith("default"):
            continue
        current = configuration.get(key)
        if current != value:
            differences.append(f"{key} registered {current!r}, class says {value!r}")
    return differences


def register_type(client, domain: str, kind: str, cls) -> bool:
    """Register ``cls`` (a Workflow or Activity class); True if it was new."""
    register, describe, type_key, config_key = _KINDS[kind]
    params = cls.registration()
    label = f"{kind} type {params['name']} {params['version']}"
    try:
        swf.call(client, register, domain=domain, **params)
    except swf.SWFError as exc:
        if exc.code != "TypeAlreadyExistsFault":
            raise
        current = swf.call(
            client, describe, domain=domain, **{type_key: {"name": params["name"], "version": params["version"]}}
        )
        status = current["typeInfo"]["status"]
        if status != "REGISTERED":
            log.warning("%s is %s in %s: new tasks of it are refused", label, status, domain)
        for difference in drift(params, current.get(config_key, {})):
            log.warning("drift: %s in %s: %s", label, domain, difference)
        log.info("already registered: %s in %s", label, domain)
        return False
    log.info("registered: %s in %s", label, domain)
    return True


def register_types(client, domain: str, kind: str, classes) -> list:
    """Register every class; returns those that were new."""
    return [cls for cls in classes if register_type(client, domain, kind, cls)]


def register_domain(client, domain: str, retention_days: str = "1") -> bool:
    """Register ``domain`` if SWF lacks it; True if it was new.

    A refusal other than "already exists" (a role without
    swf:RegisterDomain, say) is fine if the domain exists: it is described,
    and only a domain that really is missing raises.
    """
    try:
        swf.call(client, "register_domain", name=domain, workflowExecutionRetentionPeriodInDays=retention_days)
    except swf.SWFError as exc:
        if exc.code == "DomainAlreadyExistsFault":
            return False
        if swf.is_retryable(exc):
            raise
        try:
            swf.call(client, "describe_domain", name=domain)
        except swf.SWFError:
            raise exc from None
        log.warning("domain %s exists, though registering it failed: %s", domain, exc)
        return False
    log.info("registered: domain %s (retention %s day%s)", domain, retention_days, "" if retention_days == "1" else "s")
    return True


def retrying(step, *, deadline: float, what: str, clock=time.monotonic, sleep=time.sleep, rng=random.random):
    """Run ``step()``, retrying what a retry can fix (throttling, 5xx, connection errors) until ``deadline``.

    A fleet deploy registers from many hosts at once and SWF throttles it:
    that is a reason to wait, never to fail a boot. Anything else is raised.
    """
    delay = 0.5
    while True:
        try:
            return step()
        except swf.CaravanError as exc:
            if not swf.is_retryable(exc):
                raise
            wait = rng() * delay
            if clock() + wait >= deadline:
                raise
            log.warning("%s: %s (retry in %.1f s)", what, exc, wait)
            sleep(wait)
            delay = min(delay * 2, 10.0)


def register_pool(client, spec, *, register_domain_too: bool, deadline: float, **retry_options) -> None:
    """Register what a pool needs before its tasks can flow: its domain (if asked) and its types.

    ``spec`` is a PoolSpec; its factory may offer ``register_types(client,
    domain)`` (the built-in pools do; see caravand.contracts.PoolFactory).
    Runs in a throwaway process the master forks, once per pool and
    version, so that neither the master's loop nor a child's boot ever
    waits on SWF for it.
    """
    if register_domain_too:
        retrying(lambda: register_domain(client, spec.domain), deadline=deadline, what=f"domain {spec.domain}",
                 **retry_options)  # fmt: skip
    register = optional(spec.factory, "register_types")
    if register is not None:
        retrying(lambda: register(client, spec.domain), deadline=deadline, what=f"types of {spec.name}",
                 **retry_options)  # fmt: skip
