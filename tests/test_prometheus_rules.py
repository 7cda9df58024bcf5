"""The shipped Prometheus rules only use metrics rekorwatch exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from monitor.metrics import Metrics

RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus-rules.yaml"


def test_every_metric_in_the_rules_is_exported() -> None:
    families = list(Metrics().registry.collect())
    exported = {f.name for f in families} | {f"{f.name}_total" for f in families if f.type == "counter"}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"rekorwatch_[a-z_]+", rule["expr"])}
    assert used, "the rules watch rekorwatch's metrics"
    assert used <= exported, used - exported
