"""The shipped Prometheus rules and Grafana dashboard (ops/): promtool checks the rules and runs their unit
tests (Debian package `prometheus`; skipped where promtool is not installed), and every metric they name is one
the server exports, so a renamed metric cannot silently blind an alert or a panel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inferopt.drift.reference import DriftReference
from inferopt.serve.drift import DriftMonitor
from inferopt.serve.metrics import FeatureMetrics, JobMetrics, ServeMetrics
from inferopt.tasks.base import Item

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = OPS / "prometheus" / "inferopt.rules.yml"
RULE_TESTS = OPS / "prometheus" / "inferopt.rules.test.yml"
DASHBOARD = OPS / "grafana" / "inferopt-serve.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt install prometheus)")


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 14 rules found" in done.stdout


@needs_promtool
def test_each_alert_fires_on_its_traffic_and_not_on_healthy_traffic() -> None:
    done = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=300, cwd=RULE_TESTS.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr


def exported_samples() -> set[str]:
    """Every sample name the server's registries expose (counters with _total, histograms with _bucket...)."""
    registry = CollectorRegistry()
    metrics = ServeMetrics(registry)
    FeatureMetrics(registry)
    JobMetrics(registry)
    metrics.redis_up.set(1)
    reference = DriftReference.build({"x": np.arange(200.0)}, "synthetic")
    drift = DriftMonitor(reference, lambda items, outputs: outputs, window=10, min_items=1, max_age_s=60.0)
    drift.observe([Item(None)], {"x": np.ones(1)})
    registry.register(drift)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names |= {f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum")}
    return names


def named_metrics(text: str) -> set[str]:
    return set(re.findall(r"\binferopt_[a-z_]+", text))


@pytest.mark.parametrize("path", [RULES, RULE_TESTS, DASHBOARD], ids=lambda p: p.name)
def test_every_metric_the_ops_files_name_is_exported(path: Path) -> None:
    named = named_metrics(path.read_text())
    assert named, "no metric found"
    assert named <= exported_samples(), sorted(named - exported_samples())


def test_the_dashboard_panels_query_prometheus_and_use_the_recorded_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    recorded = set(re.findall(r"record: (\S+)", RULES.read_text()))
    used = {name for expr in targets for name in re.findall(r"\binferopt:[a-z0-9_:]+", expr)}
    assert used and used <= recorded
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all('job=~"$job"' in expr for expr in targets)
