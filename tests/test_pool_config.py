"""The pools of caravan.ini (caravand.config.load) and ``caravand --check``."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
from helpers import write_ini

from caravand import config
from caravand.loader import check_imports_in_child
from caravand.main import main
from caravand.pools import ModulesPool
from caravand.swf import ConfigError, Endpoint, UsageError

MASTER = "[caravand]\n"
DECIDER = """
[pool:demo-decider]
use = egg:caravand#decider
domain = CaravanDemo
task_list = default
modules = caravand.examples.demo
"""


def config_error(path: str, overrides=None) -> str:
    """The one-line message of the ConfigError (exit 78) that loading ``path`` raises."""
    with pytest.raises(ConfigError) as info:
        config.load(path, overrides)
    error = info.value
    assert error.exit_code == 78
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# -- what a valid ini makes


def test_decider_and_activity_pools(tmp_path):
    path = write_ini(
        tmp_path,
        MASTER
        + DECIDER
        + """
processes = 2
on_error = fail

[pool:greetings]
use = egg:caravand#activity
domain = CaravanDemo
task_list = greetings
modules = caravand.examples.greeting caravand.examples.greeting_activities
max_tasks = 100
max_tasks_jitter = 10
heartbeat_grace = 2.5
register = false
""",
    )
    cfg = config.load(path)
    assert cfg.path == os.path.abspath(path)
    assert list(cfg.pools) == ["demo-decider", "greetings"]  # the ini's order
    decider = cfg.pools["demo-decider"]
    assert decider.kind == "decider" and decider.use == "egg:caravand#decider"
    assert (decider.domain, decider.task_list, decider.processes) == ("CaravanDemo", "default", 2)
    assert isinstance(decider.factory, ModulesPool)
    assert decider.factory.modules == ["caravand.examples.demo"]
    assert decider.factory.poller_options == {"on_error": "fail", "max_decision_retries": 5}
    assert decider.factory.register is True
    assert decider.options == (("modules", "caravand.examples.demo"), ("on_error", "fail"))
    activity = cfg.pools["greetings"]
    assert activity.kind == "activity"
    assert activity.factory.modules == ["caravand.examples.greeting", "caravand.examples.greeting_activities"]
    assert activity.factory.register is False
    assert (activity.processes, activity.max_tasks, activity.max_tasks_jitter) == (1, 100, 10)
    assert activity.heartbeat_grace == 2.5
    # The defaults of every other pool setting.
    assert (activity.beat_timeout, activity.boot_timeout, activity.kill_grace) == (30.0, 120.0, 5.0)
    policy = activity.restart_policy()
    assert (policy.backoff_base, policy.backoff_cap, policy.max_restarts) == (1.0, 60.0, 5)
    assert (policy.restart_window, policy.fatal_retry, policy.min_uptime) == (60.0, 300.0, 5.0)
    assert cfg.has_logging is False


def test_design_example_with_region_in_default(tmp_path):
    """[DEFAULT] values the pools do not take are not unknown pool keys; [caravand] sees them."""
    path = write_ini(
        tmp_path,
        "[DEFAULT]\nregion = us-east-1\n\n[caravand]\nendpoint_url =\ngraceful_timeout = 120\n"
        "pidfile = %(here)s/run/caravand.pid\n" + DECIDER + "processes = 2\n",
    )
    cfg = config.load(path)
    assert cfg.master.region == "us-east-1" and cfg.master.endpoint_url == ""
    assert cfg.master.pidfile == f"{tmp_path}/run/caravand.pid"
    assert cfg.pools["demo-decider"].processes == 2
    assert cfg.pools["demo-decider"].options == (("modules", "caravand.examples.demo"),)


def test_no_pools_is_valid(tmp_path):
    cfg = config.load(write_ini(tmp_path, MASTER))
    assert cfg.pools == {}


def test_call_factory_of_ones_own(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "my_framework_a1.py").write_text(
        textwrap.dedent(
            """
            class Pool:
                kind = "custom"

                def __init__(self, global_conf, settings):
                    self.global_conf = global_conf
                    self.settings = settings

                def make_poller(self, endpoint, *, domain, task_list, identity, hooks):
                    return ("poller", endpoint, domain, task_list, identity, hooks)


            def factory(global_conf, data_dir, colour="blue"):
                return Pool(global_conf, {"data_dir": data_dir, "colour": colour})
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    path = write_ini(
        tmp_path,
        """
        [DEFAULT]
        zone = eu1

        [caravand]

        [pool:mine]
        use = call:my_framework_a1:factory
        domain = Mine
        task_list = jobs-%(zone)s
        data_dir = %(here)s/data
        """,
    )
    spec = config.load(path).pools["mine"]
    assert spec.kind == "custom" and spec.use == "call:my_framework_a1:factory"
    assert spec.task_list == "jobs-eu1"
    assert spec.factory.settings == {"data_dir": f"{tmp_path}/data", "colour": "blue"}
    assert spec.factory.global_conf["zone"] == "eu1"
    assert spec.factory.global_conf["here"] == str(tmp_path)
    assert spec.options == (("data_dir", f"{tmp_path}/data"),)
    assert spec.make_poller("ENDPOINT", identity="host:1", hooks="HOOKS") == (
        "poller",
        "ENDPOINT",
        "Mine",
        "jobs-eu1",
        "host:1",
        "HOOKS",
    )


def test_call_factory_must_make_a_poller_maker(tmp_path, monkeypatch):
    (tmp_path / "my_framework_b2.py").write_text("def factory(global_conf):\n    return object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_ini(tmp_path, MASTER + "[pool:mine]\nuse = call:my_framework_b2:factory\ndomain = D\ntask_list = T\n")
    message = config_error(path)
    assert "[pool:mine] use: call:my_framework_b2:factory made" in message
    assert "make_poller" in message


def test_call_factory_missing_argument_and_unknown_key(tmp_path, monkeypatch):
    (tmp_path / "my_framework_c3.py").write_text(
        "def factory(global_conf, needed):\n    raise AssertionError('not reached')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = MASTER + "[pool:mine]\nuse = call:my_framework_c3:factory\ndomain = D\ntask_list = T\n"
    assert config_error(write_ini(tmp_path, base)).endswith("[pool:mine] needed: missing")
    message = config_error(write_ini(tmp_path, base + "needed = 1\ncolour = red\n"))
    assert "[pool:mine] colour: unknown key" in message


def test_here_and_default_variables(tmp_path):
    path = write_ini(
        tmp_path,
        """
        [DEFAULT]
        dom = CaravanDemo
        list_prefix = orders

        [caravand]
        pidfile = %(here)s/run/caravand.pid

        [pool:p]
        use = egg:caravand#decider
        domain = %(dom)s
        task_list = %(list_prefix)s-decisions
        modules = caravand.examples.demo
        """,
    )
    cfg = config.load(path)
    assert cfg.master.pidfile == f"{tmp_path}/run/caravand.pid"
    assert (cfg.pools["p"].domain, cfg.pools["p"].task_list) == ("CaravanDemo", "orders-decisions")


def test_overrides_set_master_settings_and_variables(tmp_path):
    path = write_ini(
        tmp_path,
        """
        [DEFAULT]
        dom = CaravanDemo

        [caravand]
        graceful_timeout = 120

        [pool:p]
        use = egg:caravand#decider
        domain = %(dom)s
        task_list = default
        modules = caravand.examples.demo
        """,
    )
    overrides = config.split_overrides(path, ["graceful_timeout=95", "dom=Other", "spaced = a=b "])
    assert overrides == {"graceful_timeout": "95", "dom": "Other", "spaced": " a=b "}
    cfg = config.load(path, overrides)
    assert cfg.master.graceful_timeout == 95.0  # the command line wins over [caravand]
    assert cfg.pools["p"].domain == "Other"  # other names become %(name)s variables
    assert cfg.overrides == overrides
    # A bad value in an override is reported like one in the file.
    message = config_error(path, {"graceful_timeout": "soon"})
    assert "[caravand] graceful_timeout = 'soon'" in message


@pytest.mark.parametrize("item", ["noequals", "=value", " =x"])
def test_malformed_override_is_a_usage_error(tmp_path, item):
    with pytest.raises(UsageError) as info:
        config.split_overrides("caravan.ini", [item])
    assert info.value.exit_code == 2
    assert "expected key=value" in str(info.value)


def test_same_work_only_processes_differ(tmp_path):
    first = config.load(write_ini(tmp_path, MASTER + DECIDER + "processes = 2\n", "a.ini")).pools["demo-decider"]
    more = config.load(write_ini(tmp_path, MASTER + DECIDER + "processes = 5\n", "b.ini")).pools["demo-decider"]
    assert first.same_work(more) and more.same_work(first)
    assert first.processes == 2 and more.processes == 5
    changed = config.load(
        write_ini(tmp_path, MASTER + DECIDER.replace("demo\n", "greeting\n") + "processes = 2\n", "c.ini")
    ).pools["demo-decider"]
    assert changed.factory.modules == ["caravand.examples.greeting"]
    assert not first.same_work(changed)
    other_list = config.load(
        write_ini(tmp_path, MASTER + DECIDER.replace("default", "other") + "processes = 2\n", "d.ini")
    ).pools["demo-decider"]
    assert not first.same_work(other_list)
    slower = config.load(write_ini(tmp_path, MASTER + DECIDER + "processes = 2\nmin_uptime = 9\n", "e.ini"))
    assert not first.same_work(slower.pools["demo-decider"])


# -- errors: one line each, naming file, section and key; exit 78


def pool_error(tmp_path, body: str, head: str = MASTER, overrides=None) -> str:
    return config_error(write_ini(tmp_path, head + body), overrides)


def test_unknown_pool_key(tmp_path):
    message = pool_error(tmp_path, DECIDER + "colour = red\n")
    assert "[pool:demo-decider] colour: unknown key" in message
    assert "processes" in message and "modules" in message  # what it could have been


def test_unknown_key_for_the_factory(tmp_path):
    body = DECIDER.replace("#decider", "#activity") + "on_error = fail\n"  # a decider key
    assert "[pool:demo-decider] on_error: unknown key" in pool_error(tmp_path, body)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("processes = many", "[pool:demo-decider] processes: 'many': expected a whole number"),
        ("processes = -1", "[pool:demo-decider] processes: '-1': expected a whole number, 0 or more"),
        ("processes = 1.5", "[pool:demo-decider] processes: '1.5': expected a whole number"),
        ("max_tasks = lots", "[pool:demo-decider] max_tasks: 'lots'"),
        ("heartbeat_grace = 0", "[pool:demo-decider] heartbeat_grace: '0': expected a number of seconds above 0"),
        ("backoff_cap = soon", "[pool:demo-decider] backoff_cap: 'soon'"),
        ("max_restarts = x", "[pool:demo-decider] max_restarts: 'x'"),
    ],
)
def test_bad_number(tmp_path, line, expected):
    assert expected in pool_error(tmp_path, DECIDER + line + "\n")


@pytest.mark.parametrize("key", ["domain", "task_list"])
def test_missing_domain_or_task_list(tmp_path, key):
    body = "".join(line + "\n" for line in DECIDER.splitlines() if not line.startswith(key))
    assert pool_error(tmp_path, body).endswith(f"[pool:demo-decider] {key}: missing")
    empty = DECIDER.replace(f"{key} = ", f"{key} =\n#")
    assert f"[pool:demo-decider] {key}: '': must not be empty" in pool_error(tmp_path, empty)


def test_missing_modules(tmp_path):
    body = DECIDER.replace("modules = caravand.examples.demo\n", "")
    assert pool_error(tmp_path, body).endswith("[pool:demo-decider] modules: missing")
    body = DECIDER.replace("modules = caravand.examples.demo\n", "modules =\n")
    assert "[pool:demo-decider] modules: missing" in pool_error(tmp_path, body)


@pytest.mark.parametrize("section", ["[pool:two  spaces]", "[pool:a\tb]", "[pool:demo decider]"])
def test_a_pool_name_of_more_than_one_word_is_refused(tmp_path, section):
    """It names the pool in log lines, titles and labels (and the backlog counter's lines): one word."""
    message = pool_error(tmp_path, DECIDER.replace("[pool:demo-decider]", section))
    assert "a pool's name is one word, such as " in message and "\n" not in message


def test_duplicate_pool(tmp_path):
    """Two sections naming one pool: PasteDeploy finds them ambiguous; we report it."""
    message = pool_error(tmp_path, DECIDER + DECIDER.replace("[pool:demo-decider]", "[pool: demo-decider ]"))
    assert "[pool:demo-decider]" in message or "[pool: demo-decider ]" in message
    assert "demo-decider" in message and ("duplicate" in message or "Ambiguous" in message)


def test_duplicate_section(tmp_path):
    """configparser itself refuses a section written twice: still one line, exit 78."""
    message = pool_error(tmp_path, DECIDER + DECIDER)
    assert "malformed ini" in message and "pool:demo-decider" in message and "already exists" in message


def test_duplicate_key(tmp_path):
    message = pool_error(tmp_path, DECIDER + "domain = Other\n")
    assert "malformed ini" in message and "option 'domain' in section 'pool:demo-decider' already exists" in message


def test_unknown_use(tmp_path):
    message = pool_error(tmp_path, DECIDER.replace("#decider", "#nope"))
    assert "[pool:demo-decider] use: " in message and "nope" in message


def test_unknown_call_module(tmp_path):
    message = pool_error(tmp_path, DECIDER.replace("egg:caravand#decider", "call:no_such_module_zz9:factory"))
    assert "[pool:demo-decider] use: " in message and "no_such_module_zz9" in message


def test_no_use(tmp_path):
    message = pool_error(tmp_path, DECIDER.replace("use = egg:caravand#decider\n", ""))
    assert "[pool:demo-decider] use: missing" in message


def test_unimportable_module(tmp_path):
    message = pool_error(tmp_path, DECIDER.replace("caravand.examples.demo", "no_such_module_zz9"))
    assert "[pool:demo-decider] modules: no module named 'no_such_module_zz9'" in message
    message = pool_error(tmp_path, DECIDER.replace("caravand.examples.demo", "no_such_pkg_zz9.sub"))
    assert "[pool:demo-decider] modules: no module named 'no_such_pkg_zz9' (of 'no_such_pkg_zz9.sub')" in message
    # Where it was looked for, and what to do about it.
    assert "(searched: " in message and message.endswith(": set pythonpath in [caravand] or install the package")


def test_module_whose_package_fails_at_import(tmp_path, monkeypatch):
    """Loading the ini imports no package of the user's (the master stays clean): the import check finds it."""
    package = tmp_path / "broken_pkg_d4"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('boom\\nat import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_ini(tmp_path, MASTER + DECIDER.replace("caravand.examples.demo", "broken_pkg_d4.workflows"))
    loaded = config.load(path)
    assert "broken_pkg_d4" not in sys.modules
    with pytest.raises(ConfigError) as info:
        check_imports_in_child(loaded)
    assert str(info.value) == (
        f"{path}: [pool:demo-decider] modules: cannot import module 'broken_pkg_d4.workflows': "
        "RuntimeError: boom at import"
    )
    assert "broken_pkg_d4" not in sys.modules


def test_pool_key_shadowed_by_default(tmp_path):
    """PasteDeploy lets [DEFAULT] win silently over a pool's own key: refused."""
    message = pool_error(tmp_path, DECIDER, head="[DEFAULT]\ndomain = Elsewhere\n\n" + MASTER)
    assert "[pool:demo-decider] domain: also set in [DEFAULT]" in message


def test_pool_key_shadowed_by_an_override(tmp_path):
    message = pool_error(tmp_path, DECIDER, overrides={"task_list": "other"})
    assert "[pool:demo-decider] task_list: also set in [DEFAULT] or on the command line" in message


def test_default_value_for_a_key_the_pool_does_not_set(tmp_path):
    """Not a shadow: a fleet-wide default that the section leaves alone."""
    cfg = config.load(write_ini(tmp_path, "[DEFAULT]\nprocesses = 3\n" + MASTER + DECIDER))
    assert cfg.pools["demo-decider"].processes == 3


def test_unknown_section(tmp_path):
    message = pool_error(tmp_path, DECIDER + "[pools:typo]\nx = 1\n")
    assert "[pools:typo]: unknown section" in message


def test_pool_without_a_name(tmp_path):
    assert "[pool:]: a pool needs a name" in pool_error(tmp_path, DECIDER.replace("pool:demo-decider", "pool:"))


def test_bad_on_error(tmp_path):
    message = pool_error(tmp_path, DECIDER + "on_error = maybe\n")
    assert "[pool:demo-decider] on_error = 'maybe': expected one of retry, fail" in message


def test_max_decision_retries(tmp_path):
    cfg = config.load(write_ini(tmp_path, MASTER + DECIDER + "max_decision_retries = 0\n"))
    assert cfg.pools["demo-decider"].factory.poller_options == {"on_error": "retry", "max_decision_retries": 0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("many", "expected a whole number"),
        ("-1", "expected a whole number, 0 or more"),
        ("2.5", "expected a whole number"),
    ],
)
def test_bad_max_decision_retries(tmp_path, value, expected):
    message = pool_error(tmp_path, DECIDER + f"max_decision_retries = {value}\n")
    assert f"[pool:demo-decider] max_decision_retries = {value!r}: {expected}" in message


def test_retry_pool_of_a_workflow_without_task_timeout_fails_to_boot_in_one_line(tmp_path, monkeypatch):
    """Checked when the child builds its poller (the ini names modules; the classes load after fork)."""
    (tmp_path / "untimed_flows_d4.py").write_text(
        textwrap.dedent(
            """
            from caravand import Workflow


            class Untimed(Workflow):
                name = "Untimed"
                version = "1"
                default_task_start_to_close_timeout = "NONE"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    body = DECIDER.replace("caravand.examples.demo", "untimed_flows_d4")
    spec = config.load(write_ini(tmp_path, MASTER + body)).pools["demo-decider"]
    with pytest.raises(ConfigError) as info:
        spec.make_poller(Endpoint(region="us-east-1"), identity="host:1", hooks=None)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("on_error = retry: workflow Untimed 1 (Untimed) has default_task_start_to_close")
    failing = config.load(write_ini(tmp_path, MASTER + body + "on_error = fail\n", "fail.ini")).pools["demo-decider"]
    assert failing.make_poller(Endpoint(region="us-east-1"), identity="host:1", hooks=None).on_error == "fail"


def test_bad_register(tmp_path):
    message = pool_error(tmp_path, DECIDER + "register = perhaps\n")
    assert "[pool:demo-decider] register = 'perhaps': expected true or false" in message


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.ini")
    assert config_error(path) == f"{path}: no such config file"


def test_no_master_section(tmp_path):
    assert config_error(write_ini(tmp_path, DECIDER)).endswith("no [caravand] section")


# -- caravand --check


def test_check_prints_the_pools(tmp_path, capsys):
    path = write_ini(
        tmp_path,
        "[caravand]\nendpoint_url = embedded\n" + DECIDER + "processes = 2\n"
        "\n[pool:greetings]\nuse = egg:caravand#activity\ndomain = CaravanDemo\n"
        "task_list = greetings\nmodules = caravand.examples.greeting_activities\n",
    )
    assert main(["--check", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path}: ok"
    assert lines[1] == "endpoint: http://127.0.0.1:4599 (embedded)"
    assert lines[2].split() == ["POOL", "KIND", "DOMAIN", "TASK", "LIST", "PROCESSES", "USE"]
    assert lines[3].split() == ["demo-decider", "decider", "CaravanDemo", "default", "2", "egg:caravand#decider"]
    assert lines[4].split() == ["greetings", "activity", "CaravanDemo", "greetings", "1", "egg:caravand#activity"]
    assert len(lines) == 5


def test_check_applies_overrides(tmp_path, capsys):
    path = write_ini(tmp_path, "[DEFAULT]\nn = 1\n" + MASTER + DECIDER + "processes = %(n)s\n")
    assert main(["--check", path, "n=7"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[3].split()[4] == "7"


def test_check_without_pools(tmp_path, capsys):
    path = write_ini(tmp_path, MASTER)
    assert main(["--check", path]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[-1] == "no pools"


@pytest.mark.parametrize(
    ("text", "argv_extra", "expected", "code"),
    [
        (MASTER + DECIDER + "processes = many\n", [], "[pool:demo-decider] processes: 'many'", 78),
        (MASTER + DECIDER, ["oops"], "override 'oops': expected key=value", 2),
        (MASTER + DECIDER, ["=x"], "override '=x': expected key=value", 2),
        (MASTER + DECIDER + "[caravan]\n", [], "[caravan]: unknown section", 78),
    ],
)
def test_check_bad_ini(tmp_path, capsys, text, argv_extra, expected, code):
    path = write_ini(tmp_path, text)
    assert main(["--check", path, *argv_extra]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"caravand: error: {path}: ")
    assert expected in err


def test_the_shipped_aws_template_is_valid_once_its_modules_exist(tmp_path, monkeypatch):
    """etc/caravan.ini loads (pools, [DEFAULT] interpolation) and its logging sections apply."""
    import logging
    import pathlib

    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "workflows.py").write_text(
        "from caravand import Workflow\n\nclass W(Workflow):\n    name = 'W'\n    version = '1'\n"
    )
    (package / "activities.py").write_text(
        "from caravand import Activity\n\nclass A(Activity):\n    name = 'A'\n    version = '1'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    template = pathlib.Path(__file__).parent.parent / "etc" / "caravan.ini"
    loaded = config.load(str(template))
    assert {name: (p.kind, p.domain, p.processes_text) for name, p in loaded.pools.items()} == {
        "orders-decider": ("decider", "orders", "2"),
        "orders-activities": ("activity", "orders", "2..16"),  # it autoscales
    }
    assert loaded.has_logging
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        config.setup_logging(loaded)
        formatter = root.handlers[0].formatter
        record = logging.LogRecord("caravand.x", logging.INFO, __file__, 1, "hello", None, None)
        assert formatter.format(record).endswith("INFO caravand.x: hello")
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "1e12", "-1"])
def test_seconds_must_be_finite_and_bounded(tmp_path, value):
    """nan or inf would be accepted by float(); a huge value overflows the child's timers."""
    path = write_ini(tmp_path, MASTER.replace("[caravand]", f"[caravand]\ngraceful_timeout = {value}") + DECIDER)
    assert "[caravand] graceful_timeout" in config_error(path)
    path = write_ini(tmp_path, MASTER + DECIDER + f"heartbeat_grace = {value}\n")
    assert "[pool:demo-decider] heartbeat_grace" in config_error(path)


@pytest.mark.parametrize("value", ["embeded", "127.0.0.1:4599", "ftp://x"])
def test_endpoint_url_must_be_embedded_or_a_url(tmp_path, value):
    path = write_ini(tmp_path, MASTER.replace("[caravand]", f"[caravand]\nendpoint_url = {value}") + DECIDER)
    message = config_error(path)
    assert "[caravand] endpoint_url" in message and "'embedded'" in message


def test_a_factory_raising_anything_is_a_one_line_config_error(tmp_path, monkeypatch):
    (tmp_path / "odd_factory.py").write_text(
        "def factory(global_conf, **keys):\n    raise LookupError('no such queue backend')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_ini(
        tmp_path,
        MASTER + "[pool:odd]\nuse = call:odd_factory:factory\ndomain = D\ntask_list = t\n",
    )
    message = config_error(path)
    assert "[pool:odd] use" in message and "LookupError: no such queue backend" in message


def test_an_unusable_pidfile_path_is_a_config_error(tmp_path):
    from caravand.pidfile import PidFile

    with pytest.raises(ConfigError) as info:
        PidFile(os.devnull + "/caravand.pid").acquire()
    assert info.value.exit_code == 78 and "pidfile /dev/null/caravand.pid" in str(info.value)


@pytest.mark.parametrize(
    ("master", "minimum"),
    [
        ("graceful_timeout = 30", "80"),  # the README's and etc/caravan-local.ini's old value
        ("graceful_timeout = 79.5", "80"),
        ("endpoint_url = embedded\npoll_timeout = 20\ngraceful_timeout = 39", "40"),
        ("endpoint_url = http://127.0.0.1:4599\npoll_timeout = 1\ngraceful_timeout = 20", "21"),
    ],
)
def test_graceful_timeout_below_a_held_poll_and_the_alarm_margin_is_refused(tmp_path, master, minimum):
    """A TERM must never cut a held poll: SWF may still hand it a task, which then waits for its timeout."""
    path = write_ini(tmp_path, MASTER.replace("[caravand]", f"[caravand]\n{master}") + DECIDER)
    message = config_error(path)
    assert "[caravand] graceful_timeout" in message and f"at least {minimum} s" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "master",
    ["graceful_timeout = 80", "endpoint_url = embedded\npoll_timeout = 1\ngraceful_timeout = 21", "poll_timeout = 60"],
)
def test_graceful_timeout_that_covers_a_held_poll_is_taken(tmp_path, master):
    path = write_ini(tmp_path, MASTER.replace("[caravand]", f"[caravand]\n{master}") + DECIDER)
    cfg = config.load(path)
    assert cfg.master.graceful_timeout >= cfg.master.endpoint().poll_read_timeout + config.ALARM_MARGIN


def test_graceful_timeout_override_is_checked_too(tmp_path):
    path = write_ini(tmp_path, MASTER + DECIDER)
    assert "graceful_timeout = 30: at least 80 s" in config_error(path, {"graceful_timeout": "30"})


@pytest.mark.parametrize("value", ["61", "0", "soon"])
def test_poll_timeout_out_of_range_is_refused(tmp_path, value):
    path = write_ini(tmp_path, MASTER.replace("[caravand]", f"[caravand]\npoll_timeout = {value}") + DECIDER)
    assert f"[caravand] poll_timeout = '{value}'" in config_error(path)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("domain", "orders:eu", "':'"),
        ("domain", "a/b", "'/'"),
        ("task_list", "x|y", "'|'"),
        ("task_list", "bell\x07here", "control"),
        ("domain", "arn", "'arn'"),
        ("task_list", "t" * 257, "256"),
    ],
)
def test_domain_and_task_list_names_follow_swf_rules(tmp_path, key, value, why):
    pool = DECIDER.replace(f"{key} = ", f"{key} = {value}\n#", 1)
    path = write_ini(tmp_path, MASTER + pool)
    message = config_error(path)
    assert f"[pool:demo-decider] {key}" in message, message
    assert why in message


@pytest.mark.parametrize("url", ["", "https://swf.us-east-1.amazonaws.com", "http://10.0.0.8:4599"])
def test_a_short_poll_timeout_is_refused_for_real_swf(tmp_path, url):
    """A 20 s read timeout against SWF's 60 s hold drops every idle poll, and SWF hands tasks to dropped polls."""
    master = f"[caravand]\nendpoint_url = {url}\npoll_timeout = 20\ngraceful_timeout = 300\n"
    path = write_ini(tmp_path, master + DECIDER)
    message = config_error(path)
    assert "[caravand] poll_timeout = 20: SWF holds a poll 60 s" in message and "local emulator" in message


@pytest.mark.parametrize("url", ["embedded", "http://127.0.0.1:4599", "http://localhost:4599", "http://[::1]:4599"])
def test_a_short_poll_timeout_is_taken_for_a_local_emulator(tmp_path, url):
    path = write_ini(tmp_path, f"[caravand]\nendpoint_url = {url}\npoll_timeout = 1\ngraceful_timeout = 21\n")
    assert config.load(path).master.endpoint().poll_read_timeout == 11
