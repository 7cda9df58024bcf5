"""The shipped Prometheus rules and Grafana dashboard: they read only series rekorwatch exports, use no
job name, and are checked by promtool (syntax, and tests/promtool/*.yaml: every rule fires in its main
case and stays quiet otherwise). promtool comes from Debian's `prometheus` package; .ci/run installs it,
and these tests fail without it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.contract import Severity
from monitor.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yaml"))

EXPORTED_SERIES = frozenset(
    {
        "rekorwatch_build_info",
        "rekorwatch_log_tree_size",
        "rekorwatch_log_verified_size",
        "rekorwatch_log_next_index",
        "rekorwatch_log_lag_entries",
        "rekorwatch_log_last_checkpoint_timestamp_seconds",
        "rekorwatch_log_state",
        "rekorwatch_entries_processed_total",
        "rekorwatch_entry_errors_total",
        "rekorwatch_checkpoint_verifications_total",
        "rekorwatch_fetch_errors_total",
        "rekorwatch_follower_errors_total",
        "rekorwatch_task_failures_total",
        "rekorwatch_signings_total",
        "rekorwatch_alerts_total",
        "rekorwatch_alert_deliveries_total",
        "rekorwatch_alerts_pending",
        "rekorwatch_alert_deliveries_pending",
        "rekorwatch_fetch_duration_seconds_bucket",
        "rekorwatch_fetch_duration_seconds_count",
        "rekorwatch_fetch_duration_seconds_sum",
        "rekorwatch_batch_duration_seconds_bucket",
        "rekorwatch_batch_duration_seconds_count",
        "rekorwatch_batch_duration_seconds_sum",
        "rekorwatch_checkpoint_cosignature_timestamp_seconds",
        "rekorwatch_gossip_checks_total",
        "rekorwatch_certificates_total",
        "rekorwatch_unlogged_certificates",
        "rekorwatch_build_checks_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "process_open_fds",
        "python_info",
    }
)
"""Every series rekorwatch exports (monitor/metrics.py), as Prometheus names them; the rules and the
dashboard may read these, and `up`."""

METRIC = re.compile(r"\b(?:rekorwatch|process|python)_[a-z0-9_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (Debian: apt-get install prometheus; .ci/run does it)")
    return found


def rules() -> list[dict[str, Any]]:
    [group] = yaml.safe_load(RULES.read_text())["groups"]
    return group["rules"]


def dashboard_targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target for panel in dashboard["panels"] if panel["type"] != "row" for target in panel["targets"]]


def exported_by_metrics() -> set[str]:
    families = list(Metrics().registry.collect())
    names = {f.name for f in families if f.type not in ("counter", "histogram")}
    names |= {f"{f.name}_total" for f in families if f.type == "counter"}
    histograms = [f.name for f in families if f.type == "histogram"]
    return names | {f"{name}_{suffix}" for name in histograms for suffix in ("bucket", "sum", "count")}


def test_the_list_of_exported_series_holds_everything_metrics_exports() -> None:
    rekorwatch_series = {name for name in exported_by_metrics() if name.startswith("rekorwatch_")}
    assert len(rekorwatch_series) >= 10
    assert rekorwatch_series <= EXPORTED_SERIES, rekorwatch_series - EXPORTED_SERIES


def test_the_rules_read_only_exported_series_and_no_job_name() -> None:
    expressions = [rule["expr"] for rule in rules()]
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert used <= EXPORTED_SERIES, used - EXPORTED_SERIES
    assert {"rekorwatch_log_state", "rekorwatch_alert_deliveries_pending", "rekorwatch_build_info"} <= used
    assert not any("job=" in expr or 'job="' in expr for expr in expressions)
    assert any(expr.startswith("absent(") for expr in expressions)


def test_every_rule_explains_itself_in_a_runbook_section() -> None:
    anchors = {_anchor(line) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for rule in rules():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert annotations["runbook_url"].endswith(f"docs/runbook.md#{rule['alert'].lower()}")
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no section {rule['alert']}"
        assert Severity(rule["labels"]["severity"]) in (Severity.WARNING, Severity.CRITICAL)
        if "$value" in annotations["summary"]:
            assert re.search(r"\$value \| humanize", annotations["summary"]), rule["alert"]


def test_every_rule_has_a_promtool_test_that_fires_and_one_that_stays_quiet() -> None:
    cases: dict[str, list[bool]] = {}
    for path in PROMTOOL_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    for rule in rules():
        assert {True, False} <= set(cases.get(rule["alert"], [])), rule["alert"]


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert PROMTOOL_TESTS
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, PROMTOOL_TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(PROMTOOL_TESTS)


def test_the_dashboard_reads_only_exported_series_by_instance_and_log() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for target in dashboard_targets()]
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert len(used) >= 15
    assert used <= EXPORTED_SERIES, used - EXPORTED_SERIES
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert "job" not in json.dumps(variables) and not any("job" in expr for expr in expressions)
    assert "rekorwatch_build_info" in variables["instance"]["definition"]
    for expr in expressions:
        assert "$instance" in expr, expr
        assert not re.search(r"\[\d+[smhdw]\]", expr), f"a fixed range instead of $__rate_interval: {expr}"
    assert any("rekorwatch_log_state" in expr for expr in expressions)


def test_every_dashboard_panel_has_a_unit() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Grafana's variables replaced by values, each query checked by promtool as a recording rule."""
    substitutions = {"$__rate_interval": "1m", "$instance": ".+", "$log": ".+"}
    recorded = []
    for index, target in enumerate(dashboard_targets()):
        expr = target["expr"]
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        recorded.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-")
