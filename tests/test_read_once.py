"""The ini is read once per load, and every caller queries that one reading (issue 9, item 1).

Each test counts the times the file is opened, whoever opens it (PasteDeploy,
configparser, fileConfig or our own code), by watching ``open``.
"""

from __future__ import annotations

import builtins
import io
import logging
import os

import pytest
from helpers import write_ini

from caravand import cli, config, ctl, main

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


LOGGING = """
[loggers]
keys = root

[handlers]
keys = stderr

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = stderr

[handler_stderr]
class = StreamHandler
args = (sys.stderr,)
formatter = plain

[formatter_plain]
format = %(levelname)s %(name)s: %(message)s
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


@pytest.fixture
def saved_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_a_load_reads_the_file_once_however_many_pools(tmp_path, reads):
    path = write_ini(tmp_path, INI)
    loaded = config.load(path, {"dom": "Other"})
    assert len(loaded.pools) == 3 and {p.domain for p in loaded.pools.values()} == {"Other"}
    assert reads(path) == 1  # it was 1 + 3 per pool: section_keys twice and PasteDeploy's own loader


def test_a_load_and_its_logging_read_the_file_once(tmp_path, reads, saved_logging):
    path = write_ini(tmp_path, INI + LOGGING)
    loaded = config.load(path)
    config.setup_logging(loaded, level=logging.INFO)  # the ini's sections, from the reading already made
    assert reads(path) == 1
    assert logging.getLogger().handlers[-1].formatter._fmt == "%(levelname)s %(name)s: %(message)s"


def test_without_logging_sections_lines_go_to_stderr_and_boto_is_quiet(tmp_path, saved_logging, monkeypatch):
    loaded = config.load(write_ini(tmp_path, INI))
    logging.getLogger().handlers[:] = []
    for name in config.QUIET_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    config.setup_logging(loaded)  # a reload or the import check: only an ini's own sections apply
    assert logging.getLogger().handlers == []
    config.setup_logging(loaded, level=logging.INFO)  # caravand's start
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger().handlers[0].formatter._fmt == config.LOG_FORMAT
    assert {logging.getLogger(name).level for name in config.QUIET_LOGGERS} == {logging.WARNING}


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
    ctx = cli.Context(args)
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
    ctx = cli.Context(ctl.build_parser().parse_args(["-c", path, "domain", "list"]))
    assert ctx.domain == "D"
