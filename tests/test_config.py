"""The [caravand] section of caravan.ini (caravand.config.Ini.master: what caravanctl -c reads)."""

from __future__ import annotations

import os

import pytest
from helpers import write_ini

from caravand.config import DEFAULT_EMBEDDED_PORT, read_ini
from caravand.swf import ConfigError, Endpoint


def load_master(path: str, overrides=None):
    return read_ini(path).master(overrides)


def config_error(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_master(path)
    error = info.value
    assert error.exit_code == 78
    assert "\n" not in str(error)
    return error


def test_defaults(tmp_path):
    path = write_ini(tmp_path, "[caravand]\n")
    spec = load_master(path)
    assert spec.path == os.path.abspath(path)
    assert spec.endpoint_url == ""
    assert spec.embedded_port == DEFAULT_EMBEDDED_PORT == 4599
    assert spec.region == "" and spec.profile == "" and spec.pidfile == ""
    assert spec.metrics_bind == "127.0.0.1:9469"
    assert spec.graceful_timeout == 120.0
    assert spec.register_domains is False and spec.preload is False
    assert spec.embedded is False
    # Empty settings leave boto3's chain in charge.
    assert spec.endpoint() == Endpoint(endpoint_url=None, region=None, profile=None, embedded=False)


def test_every_setting(tmp_path):
    path = write_ini(
        tmp_path,
        """
[caravand]
endpoint_url = http://127.0.0.1:5000
embedded_port = 4600
region = eu-west-1
profile = dev-profile
metrics_bind = 0.0.0.0:9100
graceful_timeout = 2.5
pidfile = /run/caravand.pid
register_domains = yes
preload = On
""",
    )
    spec = load_master(path)
    assert spec.endpoint_url == "http://127.0.0.1:5000"
    assert spec.embedded_port == 4600
    assert spec.metrics_bind == "0.0.0.0:9100"
    assert spec.graceful_timeout == 2.5
    assert spec.pidfile == "/run/caravand.pid"
    assert spec.register_domains is True and spec.preload is True
    assert spec.endpoint() == Endpoint(
        endpoint_url="http://127.0.0.1:5000", region="eu-west-1", profile="dev-profile", embedded=False
    )


def test_here_interpolation(tmp_path):
    path = write_ini(tmp_path, "[caravand]\npidfile = %(here)s/run/caravand.pid\n")
    assert load_master(path).pidfile == f"{tmp_path}/run/caravand.pid"


def test_default_section_values_and_interpolation(tmp_path):
    path = write_ini(
        tmp_path,
        """
[DEFAULT]
region = us-west-2
rundir = %(here)s/run
unrelated = not a caravand key

[caravand]
pidfile = %(rundir)s/caravand.pid
""",
    )
    spec = load_master(path)
    # [DEFAULT] values reach the section, and keys of [DEFAULT] that caravand
    # does not know are not "unknown keys" of [caravand].
    assert spec.region == "us-west-2"
    assert spec.endpoint().region == "us-west-2"
    assert spec.pidfile == f"{tmp_path}/run/caravand.pid"


def test_section_value_wins_over_default(tmp_path):
    path = write_ini(tmp_path, "[DEFAULT]\nregion = us-west-2\n\n[caravand]\nregion = eu-central-1\n")
    assert load_master(path).region == "eu-central-1"


def test_overrides_replace_the_file(tmp_path):
    path = write_ini(tmp_path, "[caravand]\nembedded_port = 4600\n")
    assert load_master(path, overrides={"embedded_port": "4700"}).embedded_port == 4700
    with pytest.raises(ConfigError, match="embedded_port"):
        load_master(path, overrides={"embedded_port": "nope"})


def test_embedded_endpoint(tmp_path):
    path = write_ini(tmp_path, "[caravand]\nendpoint_url = embedded\nembedded_port = 4611\n")
    spec = load_master(path)
    assert spec.embedded is True
    endpoint = spec.endpoint()
    assert endpoint.endpoint_url == "http://127.0.0.1:4611"
    assert endpoint.embedded is True
    assert endpoint.region is None and endpoint.profile is None


def test_embedded_endpoint_default_port(tmp_path):
    path = write_ini(tmp_path, "[caravand]\nendpoint_url = embedded\n")
    assert load_master(path).endpoint() == Endpoint(endpoint_url="http://127.0.0.1:4599", embedded=True)


def test_unknown_key(tmp_path):
    path = write_ini(tmp_path, "[caravand]\nregion = us-east-1\nendpoint = http://x\n")
    message = str(config_error(path))
    assert path in message
    assert "[caravand]" in message
    assert "endpoint:" in message and "unknown key" in message
    # It lists what is known, so the typo is easy to fix.
    assert "endpoint_url" in message


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1", ""])
def test_bad_port(tmp_path, value):
    path = write_ini(tmp_path, f"[caravand]\nembedded_port = {value}\n")
    message = str(config_error(path))
    assert path in message and "[caravand]" in message and "embedded_port" in message
    assert repr(value) in message
    # Whatever is wrong with it, the message says what a port is (not int()'s own words).
    assert message.endswith(": expected a port number from 1 to 65535") and "invalid literal" not in message


@pytest.mark.parametrize("key", ["register_domains", "preload"])
def test_bad_bool(tmp_path, key):
    path = write_ini(tmp_path, f"[caravand]\n{key} = maybe\n")
    message = str(config_error(path))
    assert path in message and "[caravand]" in message and key in message
    assert "'maybe'" in message and "true or false" in message


@pytest.mark.parametrize(
    "key, value",
    [("graceful_timeout", "0"), ("graceful_timeout", "soon"), ("metrics_bind", "9469"), ("metrics_bind", "host:99999")],
)
def test_bad_values(tmp_path, key, value):
    path = write_ini(tmp_path, f"[caravand]\n{key} = {value}\n")
    message = str(config_error(path))
    assert path in message and f"[caravand] {key}" in message


def test_bad_interpolation_names_the_key(tmp_path):
    path = write_ini(tmp_path, "[caravand]\nregion = %(nowhere)s\n")
    message = str(config_error(path))
    assert path in message and "[caravand] region" in message


@pytest.mark.parametrize(
    "text",
    [
        "endpoint_url = embedded\n[caravand]\n",  # a line before any section header
        "[caravand]\nthis line is garbage\n",
        "[caravand\nregion = x\n",
        "[caravand]\nregion = a\nregion = b\n",  # a duplicate key
    ],
)
def test_malformed_ini(tmp_path, text):
    path = write_ini(tmp_path, text)
    message = str(config_error(path))
    assert message.startswith(f"{path}: malformed ini")


def test_missing_file(tmp_path):
    path = str(tmp_path / "nowhere.ini")
    message = str(config_error(path))
    assert path in message and "no such config file" in message


def test_directory_is_not_a_file(tmp_path):
    assert "no such config file" in str(config_error(str(tmp_path)))


def test_no_caravand_section(tmp_path):
    path = write_ini(tmp_path, "[DEFAULT]\nregion = us-east-1\n\n[app:main]\nuse = egg:x\n")
    message = str(config_error(path))
    assert path in message and "no [caravand] section" in message


def test_pythonpath_and_max_processes_defaults(tmp_path):
    spec = load_master(write_ini(tmp_path, "[caravand]\n"))
    assert spec.pythonpath == () and spec.max_processes == 256


def test_pythonpath_is_relative_to_the_ini_and_may_use_here(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "app").mkdir()
    path = write_ini(tmp_path, "[caravand]\npythonpath = %(here)s/lib, app ,, lib\n")
    monkeypatch.chdir("/")
    assert load_master(path).pythonpath == (str(tmp_path / "lib"), str(tmp_path / "app"))
