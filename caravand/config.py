"""Reading ``caravan.ini``: the ``[caravand]`` section, the pools, the logging sections.

As pserve does with its loader, the file is read once (:func:`read_ini`)
into an :class:`Ini` that every caller queries: :func:`load` for the daemon
(start and reload), ``caravand``'s check of its ``key=value`` overrides,
caravanctl's ``-c`` (:meth:`Ini.master`, :meth:`Ini.pool_domains`) and
:func:`setup_logging`. It is parsed with PasteDeploy's own parser, so
``%(here)s``, ``%(__file__)s`` and ``[DEFAULT]`` mean what they mean to
pserve. Each setting is one declarative :class:`Setting` record; its parser
returns the clean value or raises ``ValueError`` with what was expected, and
the error the user sees names the file, the section, the key and the value.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import inspect
import ipaddress
import logging
import logging.config
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from paste.deploy.loadwsgi import ConfigLoader, NicerConfigParser

from caravand.contracts import PollerLike, PoolFactory, is_pool_factory, optional
from caravand.loader import add_to_sys_path, sys_path_added
from caravand.poller import Hooks
from caravand.states import RestartPolicy
from caravand.swf import SWF_POLL_HOLD, ConfigError, Endpoint, UsageError, flatten

MASTER_SECTION = "caravand"
EMBEDDED = "embedded"
DEFAULT_EMBEDDED_PORT = 4599


def parse_bool(value: str) -> bool:
    """Strict: an unknown word is an error, never quietly False."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def parse_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return port


#: About 11 days: no timeout of ours is longer (and timers overflow on absurd values).
MAX_SECONDS = 1e6


def parse_positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(number) or not 0 < number <= MAX_SECONDS:
        raise ValueError(f"expected a number of seconds above 0 and at most {MAX_SECONDS:g}")
    return number


def parse_poll_timeout(value: str) -> float:
    number = parse_positive_float(value)
    if number > SWF_POLL_HOLD:
        raise ValueError(f"expected at most {SWF_POLL_HOLD:g} seconds (SWF never holds a poll longer)")
    return number


#: A stopping child gets SIGALRM this long before its SIGKILL, to fail a task
#: still in hand with one RespondActivityTaskFailed that may be throttled or
#: reconnecting (see caravand.master); a stop's deadline must leave it room.
ALARM_MARGIN = 10.0

_SWF_NAME_FORBIDDEN = re.compile(r"[:/|\x00-\x1f\x7f-\x9f]")


def parse_swf_name(value: str) -> str:
    """A domain or task list name as SWF accepts it (RegisterDomain's and TaskList's rules)."""
    value = parse_required(value)
    if len(value) > 256:
        raise ValueError("SWF names are at most 256 characters")
    bad = _SWF_NAME_FORBIDDEN.search(value)
    if bad:
        raise ValueError(f"SWF names may not contain {bad.group()!r} (nor ':', '/', '|' or control characters)")
    if value == "arn":
        raise ValueError("SWF refuses the literal name 'arn'")
    return value


def parse_endpoint_url(value: str) -> str:
    value = value.strip()
    if value and value != EMBEDDED and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("expected empty (boto3's chain), 'embedded', or an http(s):// URL")
    return value


def parse_bind(value: str) -> str:
    """HOST:PORT, or empty: off."""
    value = value.strip()
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:9469")
    parse_port(port)
    return value


def parse_text(value: str) -> str:
    return value.strip()


def parse_pythonpath(value: str) -> tuple[str, ...]:
    """Comma-separated directories, as written (see :func:`resolve_pythonpath`)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


#: SWF serves at most 1000 pollers per task list (per account and region).
SWF_MAX_POLLERS = 1000
#: The default bound on a pool's processes: a typo must not fork thousands.
DEFAULT_MAX_PROCESSES = 256


def parse_max_processes(value: str) -> int:
    number = parse_int(value)
    if not 1 <= number <= SWF_MAX_POLLERS:
        raise ValueError(
            f"expected 1 to {SWF_MAX_POLLERS} (SWF serves at most {SWF_MAX_POLLERS} pollers per task list)"
        )
    return number


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key of an ini section: its parser, default and meaning."""

    name: str
    parse: Callable[[str], object]
    default: str
    help: str


MASTER_SETTINGS = (
    Setting(
        "endpoint_url",
        parse_endpoint_url,
        "",
        "SWF endpoint URL; empty: boto3's chain (AWS_ENDPOINT_URL_SWF); "
        "'embedded': run the local emulator on 127.0.0.1:embedded_port",
    ),
    Setting("embedded_port", parse_port, str(DEFAULT_EMBEDDED_PORT), "loopback port of the embedded endpoint"),
    Setting(
        "embedded_state",
        parse_text,
        "",
        "file where the embedded endpoint keeps its SWF state across restarts (relative: to the ini's "
        "directory); empty: it starts empty each time",
    ),
    Setting("region", parse_text, "", "AWS region; empty: boto3's chain (AWS_DEFAULT_REGION, ~/.aws/config)"),
    Setting("profile", parse_text, "", "AWS profile of ~/.aws/config; empty: AWS_PROFILE or default"),
    Setting(
        "poll_timeout",
        parse_poll_timeout,
        "60",
        "seconds the endpoint may hold an empty poll (SWF: 60); lower only for an endpoint that answers sooner",
    ),
    Setting(
        "metrics_bind", parse_bind, "127.0.0.1:9469", "HOST:PORT of the Prometheus metrics endpoint; empty: no metrics"
    ),
    Setting("graceful_timeout", parse_positive_float, "120", "seconds a graceful stop waits for tasks in hand"),
    Setting("pidfile", parse_text, "", "path of the pidfile (daemon mode)"),
    Setting("log_file", parse_text, "", "with --daemon: the file stdout and stderr go to"),
    Setting("register_domains", parse_bool, "false", "register the pools' domains at start"),
    Setting("preload", parse_bool, "false", "import the pool modules in the master, before fork"),
    Setting(
        "pythonpath",
        parse_pythonpath,
        "",
        "directories put first on sys.path before the pools' modules are imported, comma-separated; "
        "relative ones are relative to the ini's directory",
    ),
    Setting(
        "max_processes",
        parse_max_processes,
        str(DEFAULT_MAX_PROCESSES),
        f"the most processes a pool may ask for (at most {SWF_MAX_POLLERS}: SWF's pollers per task list)",
    ),
)


@dataclasses.dataclass(frozen=True)
class MasterSpec:
    """The validated ``[caravand]`` section."""

    path: str
    endpoint_url: str
    embedded_port: int
    region: str
    profile: str
    poll_timeout: float
    metrics_bind: str
    graceful_timeout: float
    pidfile: str
    log_file: str
    register_domains: bool
    preload: bool
    pythonpath: tuple = ()  # absolute directories
    max_processes: int = DEFAULT_MAX_PROCESSES
    embedded_state: str = ""  # as written: master.start_embedded resolves it against the ini's directory

    @property
    def embedded(self) -> bool:
        return self.endpoint_url == EMBEDDED

    def endpoint(self) -> Endpoint:
        """Where this ini says SWF is, for :func:`caravand.swf.make_client`."""
        url = self.endpoint_url or None
        if self.embedded:
            url = f"http://127.0.0.1:{self.embedded_port}"
        return Endpoint(
            endpoint_url=url,
            region=self.region or None,
            profile=self.profile or None,
            embedded=self.embedded,
            poll_hold=self.poll_timeout,
        )


class _TextLoader(ConfigLoader):
    """PasteDeploy's ConfigLoader over text already read (its own ``__init__`` opens the file again)."""

    def __init__(self, path: str, text: str):
        self.filename = os.path.abspath(path)  # get_context resolves a use = config:... relative to it
        defaults = {"here": os.path.dirname(self.filename), "__file__": self.filename}
        self.parser = NicerConfigParser(path, defaults=defaults)
        self.parser.optionxform = str  # keys keep their case, as in PasteDeploy
        self.parser.read_string(text, path)


class _KeysAsWritten(configparser.RawConfigParser):
    """A RawConfigParser whose keys keep their case, as PasteDeploy's do (configparser lowercases them)."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


class Ini:
    """A caravan.ini read once, as pserve's loader: the daemon and caravanctl ``-c`` query this one object.

    ``loader`` is PasteDeploy's view of it: ``%(here)s``, [DEFAULT] and the
    command line's ``%(name)s`` variables applied. :meth:`written` gives the
    keys a section writes itself, which that view mixes with [DEFAULT]'s;
    ``text`` is kept for what reads the file as text (the logging sections,
    the ``%(name)s`` it uses).
    """

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.loader = _TextLoader(path, text)
        self.raw = _KeysAsWritten(default_section="\0no-default", strict=False)
        self.raw.read_string(text, path)

    def sections(self) -> list[str]:
        return self.loader.parser.sections()

    def has_section(self, section: str) -> bool:
        return self.loader.parser.has_section(section)

    def written(self, section: str) -> set[str]:
        """The keys written in ``section`` itself, without those of [DEFAULT]."""
        return set(self.raw.options(section)) if self.raw.has_section(section) else set()

    def variables_used(self) -> set[str]:
        """The names of the ``%(name)s`` written anywhere in the file."""
        return set(re.findall(r"%\(([^)]*)\)s", self.text))

    def set_variables(self, variables: dict[str, str]) -> None:
        """The command line's ``name=value`` (those that are no [caravand] setting) as [DEFAULT] values."""
        if variables:
            self.loader.update_defaults(variables)

    def defaults(self) -> dict[str, str]:
        return self.loader.parser.defaults()

    def has(self, section: str, key: str) -> bool:
        return self.loader.parser.has_option(section, key)

    def get(self, section: str, key: str) -> str:
        """The value, interpolated; a bad ``%(name)s`` is a ConfigError naming the section and key."""
        try:
            return self.loader.parser.get(section, key)
        except configparser.Error as exc:
            raise ConfigError(f"{self.path}: [{section}] {key}: {flatten(exc)}") from None

    def parse(self, section: str, settings, overrides=None, *, pool: bool = False) -> dict:
        """The clean value of each of ``settings`` in ``section``: an override, else the ini's, else the default.

        A bad value is a ConfigError with the file, section, key and value
        (``[caravand] key = 'value': why``; a pool's ``[pool:NAME] key:
        'value': why``), and a required key left out (no default) is missing.
        """
        written = self.written(section)
        values = {}
        for setting in settings:
            raw = self.get(section, setting.name) if self.has(section, setting.name) else setting.default
            if overrides and setting.name in overrides:
                raw = overrides[setting.name]
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                if setting.default == "" and setting.name not in written:
                    problem = ": missing"
                else:
                    problem = f"{': ' if pool else ' = '}{raw!r}: {exc}"
                raise ConfigError(f"{self.path}: [{section}] {setting.name}{problem}") from None
        return values

    def master(self, overrides: dict[str, str] | None = None) -> MasterSpec:
        """The validated ``[caravand]`` section, and nothing else: all that caravanctl ``-c`` reads.

        The daemon's own checks (of graceful_timeout against a held poll,
        of the pools) are :func:`load`'s.
        """
        if not self.has_section(MASTER_SECTION):
            raise ConfigError(f"{self.path}: no [{MASTER_SECTION}] section")
        known = {s.name for s in MASTER_SETTINGS}
        for key in sorted(self.written(MASTER_SECTION)):
            if key not in known:
                raise ConfigError(
                    f"{self.path}: [{MASTER_SECTION}] {key}: unknown key (known: {', '.join(sorted(known))})"
                )
        values = self.parse(MASTER_SECTION, MASTER_SETTINGS, overrides)
        values["pythonpath"] = resolve_pythonpath(self.path, MASTER_SECTION, values["pythonpath"])
        return MasterSpec(path=os.path.abspath(self.path), **values)

    def pool_domains(self) -> set[str]:
        """The domains the pools name, as written, without validating them (caravanctl's default -d)."""
        domains = set()
        for section in self.sections():
            if section.startswith(POOL_PREFIX) and self.has(section, "domain"):
                try:
                    domains.add(self.get(section, "domain").strip())
                except ConfigError:
                    continue
        return domains


def read_ini(path: str) -> Ini:
    """Read ``path`` and parse it: the one place the ini is read. A one-line ConfigError otherwise."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return Ini(path, text)
    except configparser.Error as exc:
        # configparser's messages carry the line; keep them on one line.
        raise ConfigError(f"{path}: malformed ini: {flatten(exc)}") from None


def resolve_pythonpath(path: str, section: str, dirs) -> tuple[str, ...]:
    """``dirs`` made absolute (relative ones from the ini's directory); each must be a directory."""
    base = os.path.dirname(os.path.abspath(path))
    resolved = []
    for directory in dirs:
        full = os.path.normpath(os.path.join(base, os.path.expanduser(directory)))
        if not os.path.isdir(full):
            raise ConfigError(f"{path}: [{section}] pythonpath: {full}: no such directory")
        if full not in resolved:
            resolved.append(full)
    return tuple(resolved)


# -- pools: one [pool:NAME] section each


POOL_PREFIX = "pool:"
FACTORY_GROUP = "caravand.pool_factory"


def parse_count(value: str) -> int:
    number = parse_int(value)
    if number < 0:
        raise ValueError("expected a whole number, 0 or more")
    return number


def parse_processes(value: str) -> tuple[int, int]:
    """``N`` (a fixed count), or ``MIN..MAX``: the pool autoscales between them (see caravand.autoscale)."""
    low, sep, high = value.partition("..")
    if not sep:
        number = parse_count(value)
        return number, number
    try:
        bounds = parse_count(low), parse_count(high)
    except ValueError:
        raise ValueError("expected a count, such as 4, or MIN..MAX to autoscale, such as 2..16") from None
    if bounds[0] > bounds[1] or bounds[1] == 0:
        raise ValueError("expected MIN..MAX with MIN at most MAX and MAX above 0, such as 2..16")
    return bounds


def parse_seconds_or_zero(value: str) -> float:
    try:
        if float(value) == 0:
            return 0.0
    except ValueError:
        pass
    return parse_positive_float(value)


def parse_positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number above 0") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError("expected a number above 0")
    return number


def parse_int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def parse_required(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


POOL_SETTINGS = (
    Setting("domain", parse_swf_name, "", "SWF domain of the pool's task list"),
    Setting("task_list", parse_swf_name, "", "the task list its children poll"),
    Setting(
        "processes",
        parse_processes,
        "1",
        "how many child processes poll it (at most max_processes); MIN..MAX, such as 2..16, autoscales it",
    ),
    Setting(
        "pythonpath",
        parse_pythonpath,
        "",
        "directories put first on sys.path for this pool's modules (before [caravand]'s), comma-separated",
    ),
    Setting("max_tasks", parse_count, "0", "recycle a child after this many tasks (0: never)"),
    Setting("max_tasks_jitter", parse_count, "0", "add up to this many to max_tasks, per child"),
    Setting("max_rss_mb", parse_count, "0", "recycle a child whose resident memory exceeds this (0: never)"),
    Setting("heartbeat_grace", parse_positive_float, "10", "seconds a child may overstay its declared deadline"),
    Setting("beat_timeout", parse_positive_float, "30", "seconds without a beat before a child counts as frozen"),
    Setting("boot_timeout", parse_positive_float, "120", "seconds a child may take to boot"),
    Setting("kill_grace", parse_positive_float, "5", "seconds between SIGABRT and SIGKILL of a hung child"),
    Setting("backoff_base", parse_positive_float, "1", "first restart delay after repeated crashes"),
    Setting("backoff_cap", parse_positive_float, "60", "longest restart delay"),
    Setting("max_restarts", parse_count, "5", "crashes within restart_window before FATAL"),
    Setting("restart_window", parse_positive_float, "60", "seconds over which crashes are counted"),
    Setting("fatal_retry", parse_positive_float, "300", "seconds before a FATAL pool is tried again"),
    Setting("min_uptime", parse_positive_float, "5", "a child that dies sooner failed to start"),
    Setting(
        "backlog_interval",
        parse_seconds_or_zero,
        "30",
        "seconds between counts of the pool's backlog (one CountPending*Tasks per host, only with metrics on "
        "or autoscaling); 0: never",
    ),
    Setting(
        "scale_up_backlog", parse_positive_number, "1", "autoscaling: grow while the backlog per child is above this"
    ),
    Setting("scale_up_after", parse_seconds_or_zero, "30", "autoscaling: ...for this many seconds"),
    Setting(
        "scale_down_after", parse_positive_float, "300", "autoscaling: shrink by one after a child was spare this long"
    ),
    Setting("scale_cooldown", parse_seconds_or_zero, "60", "autoscaling: seconds between two steps"),
)

#: The settings that mean something only for a pool that autoscales (processes = MIN..MAX).
SCALING = ("scale_up_backlog", "scale_up_after", "scale_down_after", "scale_cooldown")
#: The settings that size a pool, not its work: a reload that changes only these resizes it in place.
SIZING = ("processes", "scale_max", "backlog_interval", *SCALING)


@dataclasses.dataclass(frozen=True)
class PoolSpec:
    """One validated ``[pool:NAME]`` section and what its ``use`` made of it."""

    name: str
    use: str
    kind: str
    factory: PoolFactory
    options: tuple  # the factory's own keys, as (key, value) pairs
    domain: str
    task_list: str
    processes: int
    max_tasks: int
    max_tasks_jitter: int
    max_rss_mb: int
    heartbeat_grace: float
    beat_timeout: float
    boot_timeout: float
    kill_grace: float
    backoff_base: float
    backoff_cap: float
    max_restarts: int
    restart_window: float
    fatal_retry: float
    min_uptime: float
    #: The pool's pythonpath then [caravand]'s, absolute: first on sys.path before its modules import.
    pythonpath: tuple = ()
    #: The most children it may have: above ``processes`` (its least) when it autoscales (MIN..MAX).
    scale_max: int = 0
    backlog_interval: float = 30.0
    scale_up_backlog: float = 1.0
    scale_up_after: float = 30.0
    scale_down_after: float = 300.0
    scale_cooldown: float = 60.0

    @property
    def autoscaled(self) -> bool:
        return self.scale_max > self.processes

    @property
    def processes_text(self) -> str:
        """``4``, or ``2..16`` for a pool that autoscales: as the ini says it."""
        return f"{self.processes}..{self.scale_max}" if self.autoscaled else str(self.processes)

    def apply_pythonpath(self) -> None:
        """Put the pool's directories first on ``sys.path`` (in each child, and the master with preload)."""
        add_to_sys_path(self.pythonpath)

    def make_poller(self, endpoint: Endpoint, *, identity: str, hooks: Hooks) -> PollerLike:
        return self.factory.make_poller(
            endpoint, domain=self.domain, task_list=self.task_list, identity=identity, hooks=hooks
        )

    def preload(self) -> None:
        preload = optional(self.factory, "preload")
        if preload is not None:
            self.apply_pythonpath()
            preload()

    def restart_policy(self):
        return RestartPolicy(
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            max_restarts=self.max_restarts,
            restart_window=self.restart_window,
            fatal_retry=self.fatal_retry,
            min_uptime=self.min_uptime,
        )

    def same_work(self, other: PoolSpec) -> bool:
        """True when only the sizing differs (processes, autoscaling, backlog): resize in place, no replacement."""
        # Each reading makes its own factory object: the ``use`` and options that made it are what compare.
        unsized: dict[str, Any] = dict.fromkeys(SIZING, 0)
        mine = dataclasses.replace(self, factory=other.factory, **unsized)
        return mine == dataclasses.replace(other, **unsized)


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole validated caravan.ini: the master's settings and the pools."""

    path: str
    master: MasterSpec
    pools: dict
    overrides: dict
    #: The reading it was made from: its logging sections are applied from it, not from the file again.
    ini: Ini = dataclasses.field(compare=False, repr=False)

    @property
    def has_logging(self) -> bool:
        return self.ini.has_section("loggers")


def split_overrides(path: str, items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` from the command line -> a dict; UsageError (exit 2) on a malformed one."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{path}: override {item!r}: expected key=value")
        overrides[key.strip()] = value
    return overrides


def check_overrides(ini: Ini, overrides: dict[str, str]) -> None:
    """Refuse (UsageError, exit 2) a ``key=value`` that nothing in the ini would read.

    A name that is no [caravand] setting, no key of [DEFAULT] and no
    ``%(name)s`` of the file would silently become an unused [DEFAULT]
    value: ``graceful_timout=30`` would run with 120 s. A variable of one's
    own is declared in [DEFAULT] first (one line), so refusing costs nothing.
    Checked at start only: a reload keeps the overrides the master started with.
    """
    path = ini.path
    defaults = ini.written("DEFAULT")
    used = ini.variables_used()
    known = {s.name for s in MASTER_SETTINGS}
    for key, value in overrides.items():
        if key in known or key in used or key in defaults:
            continue
        close = difflib.get_close_matches(key, sorted(known | used | defaults), n=1)
        guess = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"{path}: override {key}={value}: the ini has no such [{MASTER_SECTION}] setting{guess}, [DEFAULT] key "
            f"or %({key})s; to pass a variable of your own, declare it in [DEFAULT] first"
        )


class _PoolType:
    """PasteDeploy's object type for ``[pool:NAME]`` sections and the ``caravand.pool_factory`` group."""

    name = "pool"
    egg_protocols = [[FACTORY_GROUP]]
    config_prefixes = [["pool"]]

    def invoke(self, context):  # pragma: no cover - we call the factory ourselves
        raise NotImplementedError


def _load_factory(ini: Ini, section: str, variables: dict):
    """Resolve the section's ``use`` (egg:... or call:...) to its factory with PasteDeploy, from this reading."""
    from paste.deploy import loadwsgi

    pool_type = _PoolType()
    loadwsgi._ObjectType.__init__(pool_type)  # normalizes the protocol lists
    try:
        context = ini.loader.get_context(pool_type, name=section[len(POOL_PREFIX) :], global_conf=variables)
        return context.object
    except Exception as exc:  # PasteDeploy raises LookupError, ImportError, ValueError...
        raise ConfigError(f"{ini.path}: [{section}] use: {flatten(exc)}") from None


def parse_pool(ini: Ini, section: str, variables: dict, master: MasterSpec) -> PoolSpec:
    path = ini.path
    name = section[len(POOL_PREFIX) :].strip()
    if re.search(r"\s", name):
        raise ConfigError(
            f"{path}: [{section}]: a pool's name is one word, such as {'-'.join(name.split())}: it names the pool "
            "in log lines, process titles and metric labels"
        )
    written = ini.written(section)
    shadowed = sorted(written & (ini.written("DEFAULT") | set(variables)))
    if shadowed:
        key = shadowed[0]
        raise ConfigError(
            f"{path}: [{section}] {key}: also set in [DEFAULT] or on the command line, which PasteDeploy "
            f"lets win silently over the section: keep one of them"
        )
    if "use" not in written:
        raise ConfigError(f"{path}: [{section}] use: missing (use = egg:caravand#decider or egg:caravand#activity)")
    settings = {s.name for s in POOL_SETTINGS}
    values = ini.parse(section, POOL_SETTINGS, pool=True)
    values["processes"], values["scale_max"] = values["processes"]
    autoscaled = values["scale_max"] > values["processes"]
    limit = master.max_processes
    if values["scale_max"] > limit:
        raise ConfigError(
            f"{path}: [{section}] processes = {ini.get(section, 'processes').strip()}: at most {limit} per pool "
            "(a bound, so that a "
            f"typo cannot fork thousands of processes); if you mean it, raise max_processes in [{MASTER_SECTION}], "
            f"up to {SWF_MAX_POLLERS} (SWF's limit of pollers per task list)"
        )
    scaling = sorted(written & set(SCALING))
    if scaling and not autoscaled:
        raise ConfigError(
            f"{path}: [{section}] {scaling[0]}: only a pool that autoscales uses it "
            f"(processes = MIN..MAX, such as 2..16)"
        )
    if autoscaled and not values["backlog_interval"]:
        raise ConfigError(
            f"{path}: [{section}] backlog_interval = 0: a pool that autoscales grows on its counted backlog"
        )
    pythonpath = resolve_pythonpath(path, section, values["pythonpath"])
    values["pythonpath"] = tuple(dict.fromkeys(pythonpath + master.pythonpath))

    use = ini.get(section, "use").strip()
    factory = _load_factory(ini, section, variables)
    options = {key: ini.get(section, key) for key in sorted(written) if key not in settings and key != "use"}
    # The factory's signature is its schema: check the keys against it before calling.
    parameters = list(inspect.signature(factory).parameters.values())[1:]  # after global_conf
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        for key in options:
            if key not in names:
                raise ConfigError(
                    f"{path}: [{section}] {key}: unknown key "
                    f"(pool keys: {', '.join(sorted(settings))}; {use} takes: {', '.join(names)})"
                )
    for p in parameters:
        if p.name in names and p.default is p.empty and p.name not in options:
            raise ConfigError(f"{path}: [{section}] {p.name}: missing")
    try:
        with sys_path_added(values["pythonpath"]):  # the factory may look its modules up
            made = factory(dict(ini.defaults()), **options)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [{section}] {exc}") from None
    except Exception as exc:  # a factory of one's own may raise anything
        raise ConfigError(f"{path}: [{section}] use: {use}: {type(exc).__name__}: {flatten(exc)}") from None
    if not is_pool_factory(made):
        raise ConfigError(f"{path}: [{section}] use: {use} made {made!r}, which has no make_poller()")
    kind = str(optional(made, "kind"))
    if autoscaled and kind not in ("decider", "activity"):
        raise ConfigError(
            f"{path}: [{section}] processes = {values['processes']}..{values['scale_max']}: a pool of kind "
            f"{kind!r} has no task list backlog to scale on (only decider and activity pools autoscale)"
        )
    from caravand.pools import ModulesPool  # it imports this module

    if isinstance(made, ModulesPool):  # its registrar imports the modules too, in a process of the master's
        made.pythonpath = values["pythonpath"]
    return PoolSpec(
        name=name,
        use=use,
        kind=kind,
        factory=made,
        options=tuple(sorted(options.items())),
        **values,
    )


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ::1 or localhost): an emulator, never SWF itself."""
    host = urllib.parse.urlsplit(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_poll_timeout(path: str, master: MasterSpec) -> None:
    """SWF holds a poll 60 s: a shorter read timeout would drop idle polls all the time, and SWF hands
    tasks to dropped polls. Only an emulator on this machine (embedded, or a loopback URL) may say less."""
    if master.poll_timeout < SWF_POLL_HOLD and not (master.embedded or is_loopback(master.endpoint_url)):
        raise ConfigError(
            f"{path}: [{MASTER_SECTION}] poll_timeout = {master.poll_timeout:g}: SWF holds a poll "
            f"{SWF_POLL_HOLD:g} s; a shorter one is only for a local emulator (endpoint_url = embedded, or a "
            f"loopback URL): to stop faster, see QUIT"
        )


def check_graceful_timeout(path: str, master: MasterSpec) -> None:
    """A stop must let a held poll end by itself: SWF may hand a task to a poll the client dropped.

    So graceful_timeout covers the poll's read timeout and then the margin
    in which a task still in hand is failed (so that SWF retries it at once).
    """
    read_timeout = master.endpoint().poll_read_timeout
    minimum = read_timeout + ALARM_MARGIN
    if master.graceful_timeout < minimum:
        raise ConfigError(
            f"{path}: [{MASTER_SECTION}] graceful_timeout = {master.graceful_timeout:g}: at least {minimum:g} s "
            f"(a poll's read timeout, {read_timeout:g} s, then {ALARM_MARGIN:g} s to fail a task in hand); "
            f"a shorter stop would cut polls that SWF may still hand a task to"
        )


def load(source: str | Ini, overrides: dict[str, str] | None = None) -> Config:
    """Validate a whole caravan.ini for the daemon; ConfigError (exit 78) at the first problem.

    ``source`` is the ini's path (read here, once), or its :class:`Ini`
    already read (caravand's start, which checked the overrides against it).
    Beyond :meth:`Ini.master`, the daemon's checks: graceful_timeout and
    poll_timeout against a held poll, every pool, no unknown section.
    """
    ini = source if isinstance(source, Ini) else read_ini(source)
    path = ini.path
    overrides = dict(overrides or {})
    master_names = {s.name for s in MASTER_SETTINGS}
    variables = {k: v for k, v in overrides.items() if k not in master_names}
    ini.set_variables(variables)
    master = ini.master(overrides)
    check_poll_timeout(path, master)
    check_graceful_timeout(path, master)
    pools = {}
    for section in ini.sections():
        if not section.startswith(POOL_PREFIX):
            continue
        spec = parse_pool(ini, section, variables, master)
        if not spec.name:
            raise ConfigError(f"{path}: [{section}]: a pool needs a name, as in [pool:orders-decider]")
        if spec.name in pools:
            raise ConfigError(f"{path}: [{section}]: duplicate pool {spec.name!r}")
        pools[spec.name] = spec
    known_sections = {MASTER_SECTION, "loggers", "handlers", "formatters"}
    for section in ini.sections():
        if section.startswith(POOL_PREFIX) or section in known_sections:
            continue
        if section.startswith(("logger_", "handler_", "formatter_")):
            continue
        raise ConfigError(f"{path}: [{section}]: unknown section (expected [caravand], [pool:NAME] or logging)")
    return Config(
        path=os.path.abspath(path),
        master=master,
        pools=pools,
        overrides=overrides,
        ini=ini,
    )


#: caravand's log line: time, pid, level, logger (caravanctl's leaves the pid out).
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
#: Libraries that log a line per request or retry: WARNING and above only, unless --debug.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3")


def setup_logging(
    config: Config | None = None, *, level: int | None = None, fmt: str = LOG_FORMAT, quiet_libraries: bool = True
) -> None:
    """Set logging up: the one place for caravand (start, reload, --check's child), caravanctl and the pollers.

    An ini with [loggers], [handlers] and [formatters] is applied with
    fileConfig, as pserve does, from the text read once (not from the file
    again); it then says everything, botocore's level included. Otherwise,
    given a ``level``, lines in ``fmt`` go to stderr, and botocore, boto3
    and urllib3 log warnings only (``quiet_libraries``); without one (a
    reload, the import check) nothing changes.
    """
    if config is not None and config.has_logging:
        defaults = {"here": os.path.dirname(config.path), "__file__": config.path}
        parser = configparser.ConfigParser(defaults)  # what fileConfig(path) builds, over the same text
        try:
            parser.read_string(config.ini.text, config.path)
            logging.config.fileConfig(parser, disable_existing_loggers=False)
        except Exception as exc:  # fileConfig raises KeyError, ValueError, ImportError...
            raise ConfigError(f"{config.path}: logging sections: {type(exc).__name__}: {exc}") from None
        return
    if level is None:
        return
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    if quiet_libraries:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
