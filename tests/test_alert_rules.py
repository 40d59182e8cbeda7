"""ops/prometheus/conduit-alerts.yml: the alert rules of runbook 003 over the metrics Conduit
exports. promtool checks the file and runs its unit tests (each alert fires past its threshold and
not below); .ci/run installs promtool (Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from integrations.providers import metrics
from tests.conftest import CI_MODE

RULES_DIR = Path(__file__).resolve().parent.parent / "ops" / "prometheus"
RULES = RULES_DIR / "conduit-alerts.yml"
METRIC = re.compile(r"\bcrm_[a-z_]+\b")
# runbook 003, "Alert Thresholds"
PLAYBOOK = {
    "CrmSyncErrors": ("warning", "crm_sync_errors_total", "[5m]", "> 0"),
    "CrmWebhookLatencyHigh": ("warning", "crm_webhook_latency_seconds_bucket", "[5m]", "> 2"),
    "CrmRateLimitHits": ("warning", "crm_rate_limit_hits_total", "[1m]", "> 10"),
    "CrmConnectionFailures": ("critical", "crm_connection_failures_total", "[10m]", "> 3"),
}


def exported_names() -> set[str]:
    """Every series name /metrics can show, from the metric objects themselves."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Histogram):
            names.update(value._name + suffix for suffix in ("_bucket", "_count", "_sum"))
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def rules() -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_every_playbook_threshold_is_a_rule_with_its_severity_window_and_limit() -> None:
    found = rules()
    for alert, (severity, metric, window, limit) in PLAYBOOK.items():
        rule = found[alert]
        expr = str(rule["expr"])
        assert rule["labels"] == {"severity": severity}, alert  # type: ignore[comparison-overlap]
        assert metric in expr and window in expr and expr.rstrip().endswith(limit), alert


def test_rules_use_only_metrics_conduit_exports() -> None:
    exported = exported_names()
    used = {name for rule in rules().values() for name in METRIC.findall(str(rule["expr"]))}
    assert used and used <= exported, used - exported


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if CI_MODE:
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_past_its_threshold_only() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", "conduit-alerts.test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES_DIR,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (RULES_DIR / "conduit-alerts.test.yml").read_text()))
    assert tested == set(rules())
