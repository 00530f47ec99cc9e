"""The ini is read once per load, and every caller queries that one reading (issue 9, item 1).

Each test counts the times the file is opened, whoever opens it (PasteDeploy,
configparser, fileConfig or our own code), by watching ``open``.
"""

from __future__ import annotations

import builtins
import io
import os
import textwrap

import pytest

from caravand import config, ctl, main

INI = """
[DEFAULT]
dom = CaravanDemo

[caravand]
endpoint_url = embedded
embedded_port = 4612

[pool:demo-decider]
use = egg:caravand#decider
domain = %(dom)s
task_list = default
modules = caravand.examples.demo

[pool:greetings]
use = egg:caravand#activity
domain = %(dom)s
task_list = greetings
modules = caravand.examples.greeting_activities

[pool:more]
use = egg:caravand#activity
domain = %(dom)s
task_list = more
modules = caravand.examples.greeting_activities
"""


@pytest.fixture
def reads(monkeypatch):
    """``reads(path)``: how many times ``path`` was opened for reading since the fixture started."""
    opened = []
    real_open = builtins.open

    def watched_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and "r" in mode:  # the test's own writing is no read
            opened.append(os.path.realpath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watched_open)
    monkeypatch.setattr(io, "open", watched_open)
    return lambda path: opened.count(os.path.realpath(path))


def write_ini(tmp_path, text: str) -> str:
    path = tmp_path / "caravan.ini"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_a_load_reads_the_file_once_however_many_pools(tmp_path, reads):
    path = write_ini(tmp_path, INI)
    loaded = config.load(path, {"dom": "Other"})
    assert len(loaded.pools) == 3 and {p.domain for p in loaded.pools.values()} == {"Other"}
    assert reads(path) == 1  # it was 1 + 3 per pool: section_keys twice and PasteDeploy's own loader


def test_caravand_check_reads_the_file_once(tmp_path, reads, capsys):
    """The overrides are checked against the same reading that is then loaded."""
    path = write_ini(tmp_path, INI)
    assert main.main(["--check", path, "dom=Other"]) == 0
    assert reads(path) == 1
    assert "Other" in capsys.readouterr().out


def test_caravanctl_config_reads_the_file_once(tmp_path, reads):
    """-c: the endpoint, the default domain and the embedded port come from one reading."""
    path = write_ini(tmp_path, INI)
    args = ctl.build_parser().parse_args(["-c", path, "local-endpoint", "--env"])
    ctx = ctl.Context(args)
    assert ctx.endpoint.endpoint_url == "http://127.0.0.1:4612"
    assert ctx.domain == "CaravanDemo"
    assert ctx.master.embedded_port == 4612
    assert reads(path) == 1


def test_caravanctl_config_imports_no_pool_module_and_skips_the_daemon_checks(tmp_path, reads):
    """-c stays lenient: a graceful_timeout the daemon refuses and a pool it cannot load do not matter."""
    path = write_ini(
        tmp_path,
        "[caravand]\ngraceful_timeout = 1\n\n[pool:p]\nuse = call:no_such_module_zz9:factory\ndomain = D\n",
    )
    with pytest.raises(config.ConfigError):
        config.load(path)
    ctx = ctl.Context(ctl.build_parser().parse_args(["-c", path, "domain", "list"]))
    assert ctx.domain == "D"
