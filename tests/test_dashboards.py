"""etc/grafana-dashboard.json and etc/prometheus/: valid files whose expressions name only caravand's metrics.

Each PromQL expression is reduced to the metric names it selects (strings,
label matchers, range and subquery brackets, grouping clauses, numbers,
PromQL's functions and keywords removed); what is left must be a series
caravand serves: a gauge's name, a counter's ``_total``, a histogram's
``_bucket``, ``_sum`` or ``_count``, as caravand.metrics.Families defines them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from caravand.metrics import Families

ETC = Path(__file__).resolve().parent.parent / "etc"
DASHBOARD = ETC / "grafana-dashboard.json"
PROMETHEUS = ETC / "prometheus"
RULES = PROMETHEUS / "caravand-rules.yml"
RULE_TESTS = PROMETHEUS / "caravand-rules.test.yml"
SCRAPE = PROMETHEUS / "prometheus.yml"

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

# PromQL's aggregations, functions and keywords: not metric names.
PROMQL_WORDS = {
    # aggregations
    *"sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split(),
    # keywords and operators
    *"by without on ignoring group_left group_right bool and or unless offset atan2".split(),
    # functions
    *(
        "abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week "
        "day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction "
        "histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase "
        "irate label_join label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn "
        "sort sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector year avg_over_time "
        "min_over_time max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time "
        "stdvar_over_time last_over_time present_over_time mad_over_time"
    ).split(),
    "inf",
    "nan",
}
# Grafana's template functions of a variable's query, and its values.
GRAFANA_WORDS = {"label_values", "query_result", "metrics", "label_names"}


def served_names() -> set[str]:
    """Every series name caravand's families produce."""
    names = set()
    for family in Families(CollectorRegistry()).__dict__.values():
        for metric in family.describe():
            names.update(metric.name + suffix for suffix in SUFFIXES[metric.type])
    return names


def label_names() -> set[str]:
    labels = {"le", "instance", "job"}  # a histogram's buckets; the scrape's target labels
    for family in Families(CollectorRegistry()).__dict__.values():
        labels.update(family._labelnames)
    return labels


SERVED = served_names()
LABELS = label_names()


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    rest = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    rest = re.sub(r"\{[^{}]*\}", " ", rest)  # label matchers
    rest = re.sub(r"\[[^\[\]]*\]", " ", rest)  # ranges, subqueries
    rest = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", rest)
    rest = re.sub(r"\$\{?\w+(?::\w+)?\}?", " ", rest)  # Grafana variables ($pool, $__rate_interval)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", re.sub(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?", " ", rest)))
    return words - PROMQL_WORDS - GRAFANA_WORDS


def used_labels(expr: str) -> set[str]:
    """Label names in an expression's matchers and grouping clauses."""
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = set()
    for matchers in re.findall(r"\{([^{}]*)\}", rest):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", rest):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    return labels


def check_expression(expr: str, where: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: names no metric: {expr}"
    assert names <= SERVED, f"{where}: {sorted(names - SERVED)} are no caravand metric: {expr}"
    assert used_labels(expr) <= LABELS, f"{where}: {sorted(used_labels(expr) - LABELS)} are no label: {expr}"


def test_the_checker_sees_names_and_refuses_strangers():
    expr = (
        'histogram_quantile(0.99, sum by (le, pool) (rate(caravand_task_duration_seconds_bucket{pool=~"$pool"}'
        "[$__rate_interval])))"
    )
    assert metric_names(expr) == {"caravand_task_duration_seconds_bucket"}
    assert used_labels(expr) == {"le", "pool"}
    assert metric_names('up{job="caravand"} == 0 or caravand_polls') == {"up", "caravand_polls"}
    with pytest.raises(AssertionError, match="caravand_polls"):
        check_expression("rate(caravand_polls[5m])", "here")  # a counter's name without _total
    with pytest.raises(AssertionError, match="no label"):
        check_expression('caravand_children{state="idle", worker="1"}', "here")
    assert {"caravand_polls_total", "caravand_children", "caravand_poll_duration_seconds_count"} <= SERVED


# -- the Grafana dashboard


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(board: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", ()))
    return found


def expressions(board: dict) -> list[tuple[str, str]]:
    return [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", ())
    ]


def pool_labelled() -> set[str]:
    """The series whose family has a pool label."""
    names = set()
    for family in Families(CollectorRegistry()).__dict__.values():
        if "pool" in family._labelnames:
            for metric in family.describe():
                names.update(metric.name + suffix for suffix in SUFFIXES[metric.type])
    return names


def test_the_dashboard_is_json_naming_only_caravand_metrics():
    board = dashboard()
    exprs = expressions(board)
    assert len(exprs) >= 10
    for where, expr in exprs:
        check_expression(expr, where)
        if metric_names(expr) <= pool_labelled():
            assert 'pool=~"$pool"' in expr, f"{where}: not filtered by the pool variable: {expr}"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(board):
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_the_dashboard_shows_what_operators_need():
    served = set()
    for _, expr in expressions(dashboard()):
        served |= metric_names(expr)
    assert served >= {
        "caravand_tasks_total",
        "caravand_task_duration_seconds_bucket",
        "caravand_poll_duration_seconds_bucket",
        "caravand_polls_total",
        "caravand_children",
        "caravand_child_restarts_total",
        "caravand_pool_state",
        "caravand_oldest_heartbeat_age_seconds",
        "caravand_swf_calls_total",
        "caravand_swf_errors_total",
        "caravand_pool_backlog",
        "caravand_pool_target_children",
        "caravand_pool_min_children",
        "caravand_pool_max_children",
        "caravand_scale_steps_total",
    }


def test_the_dashboard_has_a_pool_variable_of_caravand_pools():
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    pool = variables["pool"]
    assert pool["type"] == "query" and pool["multi"] and pool["includeAll"]
    assert pool["allValue"] == ".*"  # "All" matches every pool, even one added since
    family, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", pool["definition"]).groups()
    assert pool["query"]["query"] == pool["definition"]
    assert family in SERVED and label == "pool"
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels(dashboard()):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


# -- the alert rules and the scrape config


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_are_yaml_naming_only_caravand_metrics():
    alerts = rules()
    assert {rule["alert"] for rule in alerts} == {
        "CaravandPoolFatal",
        "CaravandRestartStorm",
        "CaravandNoPolls",
        "CaravandSwfThrottled",
        "CaravandHeartbeatLate",
        "CaravandBacklogGrowing",
        "CaravandPoolAtMaxWithBacklog",
    }
    for rule in alerts:
        check_expression(rule["expr"], rule["alert"])
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_scrape_config_scrapes_metrics_bind_and_loads_the_rules():
    config = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert "127.0.0.1:9469" in job["static_configs"][0]["targets"]
    assert [PROMETHEUS / path for path in config["rule_files"]] == [RULES]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH (apt-get install prometheus)")
def test_promtool_checks_the_rules_and_the_config():
    for command in (["check", "rules", str(RULES)], ["check", "config", str(SCRAPE)]):
        done = subprocess.run(["promtool", *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH (apt-get install prometheus)")
def test_promtool_unit_tests_of_the_rules_pass():
    """etc/prometheus/caravand-rules.test.yml: the backlog and autoscaling alerts fire when they should, only then."""
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    }
    assert {"CaravandBacklogGrowing", "CaravandPoolAtMaxWithBacklog"} <= tested
    done = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH (apt-get install prometheus)")
def test_promtool_parses_the_dashboards_expressions(tmp_path):
    """Each panel's PromQL, its Grafana variables given values, is a rule promtool accepts."""
    exprs = expressions(dashboard())
    group = {
        "name": "dashboard",
        "rules": [
            {"record": f"dashboard:expr{i}", "expr": expr.replace("$__rate_interval", "1m").replace("$pool", ".*")}
            for i, (_, expr) in enumerate(exprs)
        ],
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}), encoding="utf-8")
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
