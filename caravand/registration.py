"""Registering workflow and activity types with SWF when a poller starts.

Registration is idempotent: a type that already exists is described and its
defaults compared with the class's; a difference (drift) is logged, since SWF
never changes a registered type's defaults (bump the version for that).
"""

from __future__ import annotations

import logging

from caravand import swf

log = logging.getLogger(__name__)

_KINDS = {
    # kind: (register method, describe method, type key of describe, config key)
    "workflow": ("register_workflow_type", "describe_workflow_type", "workflowType", "configuration"),
    "activity": ("register_activity_type", "describe_activity_type", "activityType", "configuration"),
}


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
