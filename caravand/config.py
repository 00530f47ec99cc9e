"""Reading ``caravan.ini``: the ``[caravand]`` section and its settings.

The ini is a PasteDeploy file: it is read with PasteDeploy's own loader, so
``%(here)s``, ``%(__file__)s`` and ``[DEFAULT]`` mean what they mean to
pserve. Each setting is one declarative :class:`Setting` record; its parser
returns the clean value or raises ``ValueError`` with what was expected, and
the error the user sees names the file, the section, the key and the value.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Callable

from paste.deploy.loadwsgi import ConfigLoader

from caravand.swf import ConfigError, Endpoint

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
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return port


def parse_positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("expected a number of seconds above 0")
    return number


def parse_bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:9469")
    parse_port(port)
    return value


def parse_text(value: str) -> str:
    return value.strip()


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
        parse_text,
        "",
        "SWF endpoint URL; empty: boto3's chain (AWS_ENDPOINT_URL_SWF); "
        "'embedded': run the local emulator on 127.0.0.1:embedded_port",
    ),
    Setting("embedded_port", parse_port, str(DEFAULT_EMBEDDED_PORT), "loopback port of the embedded endpoint"),
    Setting("region", parse_text, "", "AWS region; empty: boto3's chain (AWS_DEFAULT_REGION, ~/.aws/config)"),
    Setting("profile", parse_text, "", "AWS profile of ~/.aws/config; empty: AWS_PROFILE or default"),
    Setting("metrics_bind", parse_bind, "127.0.0.1:9469", "HOST:PORT of the Prometheus metrics endpoint"),
    Setting("graceful_timeout", parse_positive_float, "120", "seconds a graceful stop waits for tasks in hand"),
    Setting("pidfile", parse_text, "", "path of the pidfile (daemon mode)"),
    Setting("register_domains", parse_bool, "false", "register the pools' domains at start"),
    Setting("preload", parse_bool, "false", "import the pool modules in the master, before fork"),
)


@dataclasses.dataclass(frozen=True)
class MasterSpec:
    """The validated ``[caravand]`` section."""

    path: str
    endpoint_url: str
    embedded_port: int
    region: str
    profile: str
    metrics_bind: str
    graceful_timeout: float
    pidfile: str
    register_domains: bool
    preload: bool

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
        )


def read_ini(path: str) -> ConfigLoader:
    """Parse ``path`` with PasteDeploy's loader; a one-line ConfigError otherwise."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    try:
        return ConfigLoader(path)
    except configparser.Error as exc:
        # configparser's messages carry the line; keep them on one line.
        raise ConfigError(f"{path}: malformed ini: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def section_keys(path: str, section: str) -> set[str]:
    """The keys written in ``section`` itself, without those of [DEFAULT]."""
    raw = configparser.RawConfigParser(default_section="\0no-default", strict=False)
    raw.optionxform = str
    raw.read(path)
    return set(raw.options(section)) if raw.has_section(section) else set()


def parse_section(path: str, loader: ConfigLoader, section: str, settings, overrides=None) -> dict:
    """Validate ``section`` against ``settings``: the clean values, by name."""
    known = {s.name: s for s in settings}
    parser = loader.parser
    for key in section_keys(path, section):
        if key not in known:
            raise ConfigError(f"{path}: [{section}] {key}: unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for setting in settings:
        raw = setting.default
        try:
            if parser.has_option(section, setting.name):
                raw = parser.get(section, setting.name)
        except configparser.Error as exc:
            raise ConfigError(f"{path}: [{section}] {setting.name}: {' '.join(str(exc).split())}") from None
        if overrides and setting.name in overrides:
            raw = overrides[setting.name]
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{path}: [{section}] {setting.name} = {raw!r}: {exc}") from None
    return values


def load_master(path: str, overrides: dict[str, str] | None = None) -> MasterSpec:
    """Read and validate the ``[caravand]`` section of the ini at ``path``."""
    loader = read_ini(path)
    if not loader.parser.has_section(MASTER_SECTION):
        raise ConfigError(f"{path}: no [{MASTER_SECTION}] section")
    values = parse_section(path, loader, MASTER_SECTION, MASTER_SETTINGS, overrides)
    return MasterSpec(path=os.path.abspath(path), **values)
