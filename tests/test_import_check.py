"""``caravand --check`` and start import every pool's modules, in a throwaway child (caravand.loader).

Also the command line's bad input (issue 8, item 5) and ``pythonpath``
(issue 12): where a pool's modules are looked for.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import textwrap

import pytest
from helpers import write_ini

from caravand import config, main
from caravand.loader import IMPORT_HINT, check_imports_in_child, check_pool_imports
from caravand.swf import ConfigError

_counter = itertools.count()

WORKFLOW = """
from caravand import Workflow


class Flow(Workflow):
    name = "Flow"
    version = "1.0"
"""


@pytest.fixture
def module(tmp_path):
    """Write a module into tmp_path/lib (not on sys.path); returns its unique name. Forgotten at teardown."""
    lib = tmp_path / "lib"
    lib.mkdir()
    written = []

    def write(source: str, stem: str = "mod", directory=lib) -> str:
        name = f"caravand_check_{stem}_{next(_counter)}"
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def pool(modules: str, name: str = "p", use: str = "egg:caravand#decider", **keys) -> str:
    lines = [f"[pool:{name}]", f"use = {use}", "domain = D", f"task_list = {name}", f"modules = {modules}"]
    return "\n" + "\n".join(lines + [f"{key} = {value}" for key, value in keys.items()]) + "\n"


def check(argv, capsys) -> tuple[int, str, str]:
    code = main.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- issue 8, item 2: a module that does not import is refused by --check and by start


BROKEN = [
    ("def broken(:\n", "cannot import module '{name}': SyntaxError"),
    ("raise RuntimeError('no\\nconfig')\n", "cannot import module '{name}': RuntimeError: no config"),
    ("X = 1\n", "module '{name}' defines no Workflow class with a name and a version"),
    ("import caravand_no_such_dependency_q7\n", "cannot import module '{name}': ModuleNotFoundError"),
]


@pytest.mark.parametrize(("source", "expected"), BROKEN)
def test_check_refuses_a_module_that_does_not_import(tmp_path, module, capsys, monkeypatch, source, expected):
    name = module(source, "broken")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    path = write_ini(tmp_path, "[caravand]\n" + pool(name, "bad"))
    code, out, err = check(["--check", path], capsys)
    assert code == 78 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"caravand: error: {path}: [pool:bad] modules: {expected.format(name=name)}"), err
    assert name not in sys.modules  # imported in the throwaway child only


def test_start_refuses_a_module_that_does_not_import_before_anything_runs(tmp_path, module, capsys, monkeypatch):
    name = module("raise RuntimeError('boom')\n", "broken")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    path = write_ini(tmp_path, "[caravand]\n" + pool(name, "bad"))
    monkeypatch.setattr(main, "run_master", lambda *args: pytest.fail("the master was started"))
    code, _, err = check([path], capsys)
    assert code == 78
    assert err == f"caravand: error: {path}: [pool:bad] modules: cannot import module '{name}': RuntimeError: boom\n"


def test_check_passes_good_modules_and_says_ok(tmp_path, module, capsys):
    name = module(WORKFLOW, "good")
    path = write_ini(tmp_path, "[caravand]\npythonpath = %(here)s/lib\n" + pool(name, "good"))
    code, out, err = check(["--check", path], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"{path}: ok"
    assert name not in sys.modules


def test_the_second_pool_is_checked_too_and_named(tmp_path, module, capsys):
    good = module(WORKFLOW, "good")
    path = write_ini(
        tmp_path,
        "[caravand]\npythonpath = lib\n" + pool(good, "first") + pool(good, "second", "egg:caravand#activity"),
    )
    code, _, err = check(["--check", path], capsys)
    assert code == 78
    assert f"[pool:second] modules: module '{good}' defines no Activity class" in err


def test_check_pool_imports_runs_here_with_each_pools_own_pythonpath(tmp_path, module, monkeypatch):
    """The function the master's reload runs in a child of its own: sys.path is left as it was."""
    other = tmp_path / "other"
    other.mkdir()
    mine = module(WORKFLOW, "mine")
    theirs = module("import sys\nSEEN = list(sys.path)\n" + WORKFLOW, "theirs", directory=other)
    path = write_ini(
        tmp_path,
        "[caravand]\n" + pool(mine, "a", pythonpath="lib") + pool(theirs, "b", pythonpath="other"),
    )
    loaded = config.load(path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    check_pool_imports(loaded)
    assert sys.path == before
    assert sys.modules[mine].__file__ == str(tmp_path / "lib" / f"{mine}.py")
    # One pool's directories are not on the path of the next pool's imports.
    seen = sys.modules[theirs].SEEN
    assert seen[0] == str(other) and str(tmp_path / "lib") not in seen


def test_a_call_factory_without_preload_is_skipped(tmp_path, monkeypatch):
    factories = tmp_path / "factories_x1.py"
    factories.write_text(
        "class Made:\n    kind = 'own'\n    def make_poller(self, *a, **k):\n        pass\n\n"
        "def factory(global_conf):\n    return Made()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_ini(
        tmp_path,
        "[caravand]\n\n[pool:own]\nuse = call:factories_x1:factory\ndomain = D\ntask_list = t\n",
    )
    check_pool_imports(config.load(path))
    check_imports_in_child(config.load(path))
    sys.modules.pop("factories_x1", None)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nos._exit(5)\n", "the checking process exited with code 5"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "the checking process was killed by SIGKILL"),
        ("import sys\nsys.exit(3)\n", "[pool:p] modules: SystemExit: 3"),
    ],
)
def test_a_module_that_ends_the_checking_process_is_refused(tmp_path, module, source, expected):
    name = module(source, "exits")
    path = write_ini(tmp_path, "[caravand]\npythonpath = lib\n" + pool(name))
    with pytest.raises(ConfigError) as info:
        check_imports_in_child(config.load(path))
    assert expected in str(info.value) and str(info.value).startswith(f"{path}: ")


def test_a_module_that_never_finishes_importing_is_killed_at_the_timeout(tmp_path, module):
    pidfile = tmp_path / "hung.pid"
    name = module(f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(3600)\n", "hung")
    path = write_ini(tmp_path, "[caravand]\npythonpath = lib\n" + pool(name))
    with pytest.raises(ConfigError, match=r"importing the pools' modules took more than 0\.5 s"):
        check_imports_in_child(config.load(path), timeout=0.5)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


def test_a_process_the_module_leaves_behind_does_not_hold_the_check(tmp_path, module):
    """The check waits for its child's exit, not for the pipe's end, which a grandchild may hold."""
    pidfile = tmp_path / "grandchild.pid"
    source = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(600)\n"
        "    os._exit(0)\n"
        f"open({str(pidfile)!r}, 'w').write(str(pid))\n" + WORKFLOW
    )
    name = module(source, "forks")
    path = write_ini(tmp_path, "[caravand]\npythonpath = lib\n" + pool(name))
    try:
        check_imports_in_child(config.load(path), timeout=60)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_check_applies_the_logging_sections_in_the_child_only(tmp_path, capsys):
    path = write_ini(
        tmp_path,
        """
        [caravand]

        [loggers]
        keys = root

        [handlers]
        keys = file

        [formatters]
        keys =

        [logger_root]
        level = INFO
        handlers = file

        [handler_file]
        class = FileHandler
        args = ('%(here)s/no/such/dir/caravand.log', 'a')
        """,
    )
    handlers = list(logging.getLogger().handlers)
    code, out, err = check(["--check", path], capsys)
    assert code == 78 and out == ""
    assert err.startswith(f"caravand: error: {path}: logging sections: FileNotFoundError") and err.count("\n") == 1
    assert logging.getLogger().handlers == handlers
    # A good logging section passes, and leaves this process's logging alone.
    (tmp_path / "no" / "such" / "dir").mkdir(parents=True)
    assert check(["--check", path], capsys)[0] == 0
    assert logging.getLogger().handlers == handlers


# -- issue 8, item 5: the command line


@pytest.mark.parametrize("extra", ["foo", "=x", " =y"])
def test_a_malformed_key_value_is_a_usage_error(tmp_path, capsys, extra):
    path = write_ini(tmp_path, "[caravand]\n")
    for argv in (["--check", path, extra], [path, extra]):
        code, _, err = check(argv, capsys)
        assert code == 2
        assert err == f"caravand: error: {path}: override {extra!r}: expected key=value\n"


def test_a_mistyped_override_is_refused_with_a_suggestion(tmp_path, capsys):
    path = write_ini(tmp_path, "[caravand]\n")
    code, _, err = check(["--check", path, "graceful_timout=30"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{path}: override graceful_timout=30: the ini has no such [caravand] setting" in err
    assert "(did you mean graceful_timeout?)" in err and "declare it in [DEFAULT]" in err


def test_overrides_the_ini_reads_are_taken(tmp_path, capsys):
    path = write_ini(
        tmp_path,
        "[DEFAULT]\ndeclared = 1\n\n[caravand]\ngraceful_timeout = %(grace)s\n"
        + pool("caravand.examples.demo", "demo", processes="%(n)s"),
    )
    argv = ["--check", path, "grace=200", "n=3", "declared=2", "region=eu-west-1"]
    code, out, err = check(argv, capsys)
    assert (code, err) == (0, ""), err
    assert out.splitlines()[3].split()[4] == "3"


def test_processes_has_an_upper_bound_that_max_processes_raises(tmp_path):
    body = pool("caravand.examples.demo", "many", processes="257")
    with pytest.raises(ConfigError) as info:
        config.load(write_ini(tmp_path, "[caravand]\n" + body))
    message = str(info.value)
    assert "[pool:many] processes = 257: at most 256 per pool" in message
    assert "raise max_processes in [caravand], up to 1000 (SWF's limit of pollers per task list)" in message
    assert config.load(write_ini(tmp_path, "[caravand]\nmax_processes = 300\n" + body)).pools["many"].processes == 257
    with pytest.raises(ConfigError, match=r"max_processes = '1001': expected 1 to 1000"):
        config.load(write_ini(tmp_path, "[caravand]\nmax_processes = 1001\n"))
    lowered = write_ini(tmp_path, "[caravand]\nmax_processes = 10\n" + pool("caravand.examples.demo", processes="20"))
    with pytest.raises(ConfigError, match=r"\[pool:p\] processes = 20: at most 10 per pool"):
        config.load(lowered)


def test_no_arguments_names_only_the_ini_as_required(capsys):
    code, _, err = check([], capsys)
    assert code == 2
    assert err == "caravand: error: the following arguments are required: INI (see caravand --help)\n"


def test_help_names_the_exit_codes_and_the_signals(capsys):
    with pytest.raises(SystemExit) as info:
        main.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "78 "):
        assert f"\n  {code}" in out
    for name in ("TERM", "INT", "QUIT", "HUP", "TTIN", "TTOU", "USR1"):
        assert f"\n  {name} " in out
    assert "usage: caravand [-h] [--check]" in out and "INI [key=value ...]" in out


# -- issue 12: pythonpath


def test_pythonpath_in_caravand_and_per_pool(tmp_path, monkeypatch):
    for name in ("lib", "shared", "pool-lib"):
        (tmp_path / name).mkdir()
    path = write_ini(
        tmp_path,
        "[caravand]\npythonpath = %(here)s/lib, shared\n"
        + pool("caravand.examples.demo", "own", pythonpath="pool-lib,lib")
        + pool("caravand.examples.demo", "plain"),
    )
    monkeypatch.chdir("/")  # relative to the ini's directory, not the working one
    loaded = config.load(path)
    assert loaded.master.pythonpath == (str(tmp_path / "lib"), str(tmp_path / "shared"))
    # The pool's own first, then [caravand]'s, each once.
    assert loaded.pools["own"].pythonpath == (
        str(tmp_path / "pool-lib"),
        str(tmp_path / "lib"),
        str(tmp_path / "shared"),
    )
    assert loaded.pools["plain"].pythonpath == loaded.master.pythonpath
    assert loaded.pools["own"].factory.pythonpath == loaded.pools["own"].pythonpath  # for its registrar


@pytest.mark.parametrize("section", ["[caravand]\npythonpath = nope\n", "[caravand]\n" + pool("x", pythonpath="nope")])
def test_a_pythonpath_that_is_no_directory_is_refused(tmp_path, section):
    path = write_ini(tmp_path, section)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    where = "[caravand]" if section.count("[") == 1 else "[pool:p]"
    assert str(info.value) == f"{path}: {where} pythonpath: {tmp_path / 'nope'}: no such directory"


def test_a_module_found_only_through_pythonpath(tmp_path, module, capsys):
    name = module(WORKFLOW, "beside")
    without = write_ini(tmp_path, "[caravand]\n" + pool(name), "without.ini")
    code, _, err = check(["--check", without], capsys)
    assert code == 78
    assert f"[pool:p] modules: no module named '{name}' (searched: " in err
    assert err.endswith(f"): {IMPORT_HINT}\n") and str(tmp_path / "lib") not in err
    with_it = write_ini(tmp_path, "[caravand]\npythonpath = lib\n" + pool(name), "with.ini")
    assert check(["--check", with_it], capsys)[0] == 0
    per_pool = write_ini(tmp_path, "[caravand]\n" + pool(name, pythonpath="%(here)s/lib"), "per-pool.ini")
    assert check(["--check", per_pool], capsys)[0] == 0
    override = write_ini(tmp_path, "[caravand]\n" + pool(name), "override.ini")
    assert check(["--check", override, "pythonpath=lib"], capsys)[0] == 0


def test_a_changed_pythonpath_replaces_the_pool(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    demo = pool("caravand.examples.demo")
    first = config.load(write_ini(tmp_path, "[caravand]\npythonpath = one\n" + demo, "a.ini")).pools["p"]
    same = config.load(write_ini(tmp_path, "[caravand]\npythonpath = one\n" + demo, "b.ini")).pools["p"]
    second = config.load(write_ini(tmp_path, "[caravand]\npythonpath = two\n" + demo, "c.ini")).pools["p"]
    assert first.same_work(same)
    assert not first.same_work(second)


def test_a_pool_applies_its_pythonpath_in_each_process_that_imports(tmp_path, module, monkeypatch):
    """PoolSpec.preload (the master, with preload), ChildProcess.main and the registrar's import."""
    name = module(WORKFLOW, "applied")
    loaded = config.load(write_ini(tmp_path, "[caravand]\npythonpath = lib\n" + pool(name)))
    spec = loaded.pools["p"]
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec.preload()
    assert sys.path[0] == str(tmp_path / "lib") and name in sys.modules
    sys.path.remove(str(tmp_path / "lib"))
    sys.modules.pop(name)
    # The registrar calls the factory's register_types, which imports through classes().
    assert list(spec.factory.classes()) == [("Flow", "1.0")]
    assert sys.path[0] == str(tmp_path / "lib")


def test_a_child_puts_its_pools_pythonpath_first_before_it_builds_its_poller(tmp_path, module, monkeypatch):
    from caravand.child import ChildProcess

    loaded = config.load(write_ini(tmp_path, "[caravand]\npythonpath = lib\n" + pool("caravand.examples.demo")))
    monkeypatch.setattr(sys, "path", list(sys.path))
    seen = []

    class Stop(Exception):
        pass

    def die_with_parent(pid):
        seen.append(list(sys.path))
        raise Stop

    monkeypatch.setattr("caravand.child.die_with_parent", die_with_parent)
    child = ChildProcess(loaded.pools["p"], 1, None, -1, os.getppid())
    with pytest.raises(Stop):
        child.main()
    assert seen[0][0] == str(tmp_path / "lib")
