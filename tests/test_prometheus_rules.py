"""The shipped Prometheus rules and Grafana dashboard only use metrics rekorwatch exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from monitor.metrics import Metrics

CONFIG = Path(__file__).resolve().parents[1] / "config"


def exported_names() -> set[str]:
    families = list(Metrics().registry.collect())
    names = {f.name for f in families} | {f"{f.name}_total" for f in families if f.type == "counter"}
    return names | {f"{f.name}_bucket" for f in families if f.type == "histogram"}


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"rekorwatch_[a-z_]+", expr)}


def test_every_metric_in_the_rules_is_exported() -> None:
    rules = yaml.safe_load((CONFIG / "prometheus-rules.yaml").read_text())["groups"][0]["rules"]
    used = metric_names([rule["expr"] for rule in rules])
    assert used, "the rules watch rekorwatch's metrics"
    assert used <= exported_names(), used - exported_names()


def test_every_metric_on_the_dashboard_is_exported() -> None:
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    used = metric_names([target["expr"] for panel in dashboard["panels"] for target in panel["targets"]])
    assert len(used) >= 10
    assert used <= exported_names(), used - exported_names()
