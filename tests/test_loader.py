"""Finding Workflow/Activity classes in modules, and registering their types (moto)."""

from __future__ import annotations

import importlib
import itertools
import logging
import sys
import textwrap

import pytest

from caravand import Activity, Workflow, registration, swf
from caravand.activity_worker import ActivityWorker
from caravand.decider import Decider
from caravand.examples import greeting, greeting_activities
from caravand.loader import import_module, load_classes
from caravand.swf import ConfigError

_counter = itertools.count()


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Write a module into tmp_path (on sys.path); returns its unique name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(source: str, stem: str = "mod") -> str:
        name = f"caravand_test_{stem}_{next(_counter)}_{tmp_path.name.replace('-', '_')}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


WORKFLOWS = """
    from caravand import Activity, Workflow

    class Base(Workflow):
        '''A shared base without a name: never served.'''
        default_task_list = "tl"

    class Named(Workflow):
        name = "NoVersion"  # no version: not served either

    class Versioned(Workflow):
        version = "3.0"  # a base that fixes the version for its subclasses: no name, not served

    class One(Base):
        name = "One"
        version = "1.0"

    class Two(Base):
        name = "Two"
        version = "1.0"

    class Work(Activity):
        name = "Work"
        version = "1.0"
"""


def test_only_concrete_classes_defined_in_the_module(write_module):
    module = write_module(WORKFLOWS)
    found = load_classes([module], Workflow)
    assert set(found) == {("One", "1.0"), ("Two", "1.0")}
    assert found[("One", "1.0")].__module__ == module
    assert found[("One", "1.0")].default_task_list == "tl"  # inherited from the base
    assert set(load_classes([module], Activity)) == {("Work", "1.0")}


def test_imported_classes_are_not_taken(write_module):
    defining = write_module(WORKFLOWS, "defining")
    importing = write_module(
        f"""
        from caravand import Workflow
        from {defining} import One, Two  # imported: served by their own module only

        class Three(One):
            name = "Three"
        """,
        "importing",
    )
    assert set(load_classes([importing], Workflow)) == {("Three", "1.0")}
    # Both modules together: each class once, no false duplicate.
    assert set(load_classes([defining, importing], Workflow)) == {("One", "1.0"), ("Two", "1.0"), ("Three", "1.0")}


def test_abstract_classes_are_skipped(write_module):
    module = write_module(
        """
        import abc
        from caravand import Workflow

        class Abstract(Workflow, abc.ABC):
            name = "Abstract"
            version = "1"

            @abc.abstractmethod
            def step(self): ...

        class Concrete(Abstract):
            def step(self):
                return 1
            name = "Concrete"
        """
    )
    assert set(load_classes([module], Workflow)) == {("Concrete", "1")}


def test_the_same_module_twice_is_not_a_duplicate(write_module):
    module = write_module(WORKFLOWS)
    assert set(load_classes([module, module], Workflow)) == {("One", "1.0"), ("Two", "1.0")}


def test_duplicate_name_and_version_is_an_error(write_module):
    first = write_module(WORKFLOWS, "first")
    second = write_module(
        """
        from caravand import Workflow

        class AnotherOne(Workflow):
            name = "One"
            version = "1.0"
        """,
        "second",
    )
    with pytest.raises(ConfigError) as info:
        load_classes([first, second], Workflow)
    message = str(info.value)
    assert "Workflow One 1.0 is defined twice" in message
    assert f"{first}.One" in message and f"{second}.AnotherOne" in message
    assert info.value.exit_code == 78


def test_duplicate_within_one_module(write_module):
    module = write_module(
        """
        from caravand import Activity

        class A(Activity):
            name = "Same"
            version = "1"

        class B(Activity):
            name = "Same"
            version = "1"
        """
    )
    with pytest.raises(ConfigError, match="Activity Same 1 is defined twice"):
        load_classes([module], Activity)


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("import caravand_no_such_dependency_xyz\n", "ModuleNotFoundError"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('bad config\\nsecond line\\nthird line')\n", "RuntimeError"),
    ],
)
def test_unimportable_module_is_a_one_line_config_error(write_module, source, cause):
    module = write_module(source, "broken")
    with pytest.raises(ConfigError) as info:
        load_classes([module], Workflow)
    message = str(info.value)
    assert message.startswith(f"cannot import module {module!r}: {cause}")
    assert "\n" not in message
    assert module not in sys.modules


def test_missing_module_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot import module 'caravand_not_a_module_at_all'"):
        load_classes(["caravand_not_a_module_at_all"], Workflow)


def test_a_module_not_found_says_where_it_looked_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_classes(["mybench_nowhere_x3"], Workflow)
    message = str(info.value)
    assert message.startswith(f"cannot import module 'mybench_nowhere_x3' (searched: {tmp_path}, ")
    assert message.endswith("): set pythonpath in [caravand] or install the package")
    assert "\n" not in message
    # The hint is the caller's: caravan-decider names its own option.
    with pytest.raises(ConfigError, match=r"\): add its directory with --pythonpath$"):
        load_classes(["mybench_nowhere_x3"], Workflow, hint="add its directory with --pythonpath")
    with pytest.raises(ConfigError, match=r"\): pass --pythonpath$"):
        import_module("mybench_nowhere_x3", hint="pass --pythonpath")


def test_a_missing_submodule_says_where_its_package_looked(write_module, tmp_path):
    package = tmp_path / "caravand_test_pkg_sub_q2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    importlib.invalidate_caches()
    try:
        with pytest.raises(ConfigError) as info:
            import_module("caravand_test_pkg_sub_q2.missing")
        assert str(info.value).startswith(
            f"cannot import module 'caravand_test_pkg_sub_q2.missing' (searched: {package}):"
        )
    finally:
        sys.modules.pop("caravand_test_pkg_sub_q2", None)


def test_module_without_a_class_is_an_error(write_module):
    empty = write_module("X = 1\n", "empty")
    with pytest.raises(ConfigError, match=f"module '{empty}' defines no Workflow class with a name and a version"):
        load_classes([empty], Workflow)
    # Only bases, or only imported classes, is no better.
    bases_only = write_module(
        """
        from caravand import Workflow
        from caravand.examples.greeting import Greeting

        class Base(Workflow):
            pass
        """,
        "bases",
    )
    with pytest.raises(ConfigError, match="defines no Workflow class"):
        load_classes([bases_only], Workflow)


def test_examples_need_not_import_each_other():
    assert load_classes(["caravand.examples.greeting"], Workflow) == {("Greeting", "1.0"): greeting.Greeting}
    assert load_classes(["caravand.examples.greeting_activities"], Activity) == {
        ("NormalizeName", "1.0"): greeting_activities.NormalizeName,
        ("Greet", "1.0"): greeting_activities.Greet,
    }
    with pytest.raises(ConfigError, match="defines no Activity class"):
        load_classes(["caravand.examples.greeting"], Activity)


def test_pollers_from_modules():
    endpoint = swf.Endpoint(region="us-east-1")
    decider = Decider.from_modules(endpoint, "D", "tl", ["caravand.examples.demo", "caravand.examples.greeting"])
    assert set(decider.workflows) == {("Demo", "0.1"), ("Greeting", "1.0")}
    worker = ActivityWorker.from_modules(endpoint, "D", "tl", ["caravand.examples.greeting_activities"])
    assert set(worker.activities) == {("NormalizeName", "1.0"), ("Greet", "1.0")}
    assert decider.client is None and worker.client is None  # clients come with start(), after fork


# -- registration (moto)


class Flow(Workflow):
    name = "Flow"
    version = "1.0"
    description = "a flow"
    default_task_list = "flows"
    default_execution_start_to_close_timeout = "600"
    default_task_start_to_close_timeout = "10"
    default_child_policy = "TERMINATE"


class FlowChanged(Flow):
    default_task_start_to_close_timeout = "30"
    default_task_list = "elsewhere"


class Job(Activity):
    name = "Job"
    version = "1.0"
    default_task_list = "jobs"
    default_task_start_to_close_timeout = "60"


class JobChanged(Job):
    default_task_heartbeat_timeout = "20"


@pytest.fixture
def domain(swf_client):
    swf_client.register_domain(name="Reg", workflowExecutionRetentionPeriodInDays="1")
    return "Reg"


def test_new_workflow_type_is_registered(swf_client, domain, caplog):
    caplog.set_level(logging.INFO, logger="caravand.registration")
    assert registration.register_types(swf_client, domain, "workflow", [Flow]) == [Flow]
    described = swf_client.describe_workflow_type(domain=domain, workflowType={"name": "Flow", "version": "1.0"})
    assert described["typeInfo"]["status"] == "REGISTERED"
    assert described["typeInfo"]["description"] == "a flow"
    configuration = described["configuration"]
    assert configuration["defaultTaskList"] == {"name": "flows"}
    assert configuration["defaultTaskStartToCloseTimeout"] == "10"
    assert configuration["defaultExecutionStartToCloseTimeout"] == "600"
    assert "registered: workflow type Flow 1.0 in Reg" in caplog.text


def test_existing_type_with_the_same_defaults_is_quiet(swf_client, domain, caplog):
    registration.register_types(swf_client, domain, "workflow", [Flow])
    registration.register_types(swf_client, domain, "activity", [Job])
    caplog.clear()
    caplog.set_level(logging.INFO, logger="caravand.registration")
    assert registration.register_types(swf_client, domain, "workflow", [Flow]) == []
    assert registration.register_types(swf_client, domain, "activity", [Job]) == []
    assert "already registered: workflow type Flow 1.0 in Reg" in caplog.text
    assert "already registered: activity type Job 1.0 in Reg" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_existing_workflow_type_with_other_defaults_logs_drift(swf_client, domain, caplog):
    registration.register_types(swf_client, domain, "workflow", [Flow])
    caplog.set_level(logging.INFO, logger="caravand.registration")
    assert registration.register_types(swf_client, domain, "workflow", [FlowChanged]) == []
    drifts = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(drifts) == 2
    assert all(m.startswith("drift: workflow type Flow 1.0 in Reg: ") for m in drifts)
    assert any("defaultTaskStartToCloseTimeout registered '10', class says '30'" in m for m in drifts)
    assert any("defaultTaskList registered {'name': 'flows'}, class says {'name': 'elsewhere'}" in m for m in drifts)
    # SWF keeps the first registration's defaults.
    described = swf_client.describe_workflow_type(domain=domain, workflowType={"name": "Flow", "version": "1.0"})
    assert described["configuration"]["defaultTaskStartToCloseTimeout"] == "10"


def test_existing_activity_type_with_other_defaults_logs_drift(swf_client, domain, caplog):
    assert registration.register_types(swf_client, domain, "activity", [Job]) == [Job]
    caplog.set_level(logging.INFO, logger="caravand.registration")
    assert registration.register_types(swf_client, domain, "activity", [JobChanged]) == []
    drifts = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert drifts == [
        "drift: activity type Job 1.0 in Reg: defaultTaskHeartbeatTimeout registered 'NONE', class says '20'"
    ]


def test_deprecated_type_is_reported(swf_client, domain, caplog):
    registration.register_types(swf_client, domain, "activity", [Job])
    swf_client.deprecate_activity_type(domain=domain, activityType={"name": "Job", "version": "1.0"})
    caplog.set_level(logging.INFO, logger="caravand.registration")
    assert registration.register_types(swf_client, domain, "activity", [Job]) == []
    assert "activity type Job 1.0 is DEPRECATED in Reg" in caplog.text


def test_registration_in_an_unknown_domain_raises(swf_client):
    with pytest.raises(swf.SWFError) as info:
        registration.register_types(swf_client, "NoSuchDomain", "workflow", [Flow])
    assert info.value.code == "UnknownResourceFault"
    assert info.value.operation == "RegisterWorkflowType"  # raised as is, not described


def test_drift():
    wanted = {"name": "X", "version": "1", "description": "new", "defaultTaskList": {"name": "a"}}
    assert registration.drift(wanted, {"defaultTaskList": {"name": "a"}}) == []
    assert registration.drift(wanted, {}) == ["defaultTaskList registered None, class says {'name': 'a'}"]
