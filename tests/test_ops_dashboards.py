"""Runbook 003's metric names as it reads them: the P95 recording rules of
ops/prometheus/conduit-recording.yml (promtool checks them and runs their unit tests) and its
"Dashboard Queries" as the Grafana dashboard ops/grafana/conduit-crm.json. Every metric name in a
panel or a rule is one that GET /metrics really shows, or a recorded series."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Gauge
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from integrations.providers import metrics
from tests.test_alert_rules import promtool

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "ops" / "prometheus"
RECORDING = RULES_DIR / "conduit-recording.yml"
RECORDING_TEST = RULES_DIR / "conduit-recording.test.yml"
ALERTS = RULES_DIR / "conduit-alerts.yml"
DASHBOARD = REPO / "ops" / "grafana" / "conduit-crm.json"
PROVISIONING = REPO / "ops" / "grafana" / "provisioning" / "dashboards.yml"
# runbook 003: the seeds beside the repository (DESIGN.md: ../shared/seeds), else a copy of them
# in tests/fixtures/seeds where the checkout has one
PLAYBOOK_NAME = "003_7c42889a87d2c4e0.txt"
SEED_FOLDERS = (REPO.parent / "shared" / "seeds", REPO / "tests" / "fixtures" / "seeds")

# runbook 003, "Dashboard Queries", as written (checked against the seed when it is there)
PLAYBOOK_QUERIES = [
    "rate(crm_sync_errors_total[5m])",
    "histogram_quantile(0.95, rate(crm_sync_duration_seconds_bucket[5m]))",
    "rate(crm_rate_limit_hits_total[1m])",
]
# the P95 names runbook 003 reads ("Key Metrics to Watch", "Alert Thresholds") and SEV-3's
# crm_sync_duration_seconds P95
PLAYBOOK_P95 = {"crm_webhook_latency_seconds_p95", "webhook_latency_p95", "crm_sync_duration_seconds_p95"}
# each alert that compares a P95 with the playbook's 2 s, and the recorded series of that P95
ALERT_P95 = {
    "CrmWebhookLatencyHigh": "crm_webhook_latency_seconds_p95",
    "CrmSyncSlow": "crm_sync_duration_seconds_p95",
}


# --- PromQL metric names -------------------------------------------------------------------

_STRING = r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`'
_TOKEN = re.compile(
    rf"""
    (?P<string>{_STRING})
  | (?P<matchers>\{{(?:{_STRING}|[^{{}}"'`])*\}})
  | (?P<range>\[[^\]]*\])
  | (?P<variable>\$\{{[^}}]*\}}|\$\w+)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<comment>\#[^\n]*)
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE,
)
# words of the language that are not metric names when no "(" follows them
_KEYWORDS = {"bool", "offset", "and", "or", "unless", "inf", "nan"}
# modifiers whose "( ... )" lists label names, not expressions
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_NAME_MATCHER = re.compile(rf"__name__\s*(=~|!~|!=|=)\s*({_STRING})")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are neither a function or
    aggregation (followed by "(", or by "by"/"without"), a keyword, a label list of
    by/without/on/ignoring/group_*, a label matcher inside {}, a duration inside [] or a string;
    plus {__name__="..."}. A __name__ matcher that is not an exact match comes back as itself,
    so that it is reported."""
    tokens = [
        (m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup not in ("space", "comment")
    ]
    names: set[str] = set()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if kind == "matchers":
            for op, value in _NAME_MATCHER.findall(text):
                names.add(value[1:-1] if op == "=" else f"__name__{op}{value}")
        elif kind == "ident":
            if text.lower() in _LABEL_LISTS:
                if following == "(":
                    index = next(i for i in range(index + 1, len(tokens)) if tokens[i][1] == ")")
            elif (
                following != "("
                and following.lower() not in ("by", "without")
                and text.lower() not in _KEYWORDS
            ):
                names.add(text)
        index += 1
    return names


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    return promql_metric_names(expr) - known


@cache
def exported_names() -> frozenset[str]:
    """Every sample name that GET /metrics shows for Conduit's metrics: each metric object of
    integrations.providers.metrics gets a child with probe labels, and the names are read from
    the real multiprocess exposition (render_metrics), not derived from the metric types."""
    probe = "ops_dashboard_probe"
    found = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    assert found, "integrations.providers.metrics defines no metric"
    for metric in found:
        child = metric.labels(**dict.fromkeys(metric._labelnames, probe)) if metric._labelnames else metric
        if isinstance(child, Gauge):
            child.set(0)  # a "mostrecent" gauge shows only values that were set
    unlabelled = {metric._name for metric in found if not metric._labelnames}
    return frozenset(
        sample.name
        for family in text_string_to_metric_families(metrics.render_metrics().decode())
        for sample in family.samples
        if probe in sample.labels.values() or family.name in unlabelled
    )


# --- the files -----------------------------------------------------------------------------


def rule_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def recording_rules() -> dict[str, str]:
    return {rule["record"]: str(rule["expr"]) for group in rule_groups(RECORDING) for rule in group["rules"]}


def alert_rules() -> dict[str, str]:
    return {rule["alert"]: str(rule["expr"]) for group in rule_groups(ALERTS) for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def panel_exprs() -> dict[str, str]:
    """expr -> title of the panel that shows it."""
    return {target["expr"]: panel["title"] for panel in panels() for target in panel["targets"]}


def known_names() -> set[str]:
    return set(exported_names()) | set(recording_rules())


# --- the PromQL reader itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(crm_sync_errors_total[5m])", {"crm_sync_errors_total"}),
        (
            "histogram_quantile(0.95, sum by (le, provider)"
            ' (rate(x_bucket{provider=~"hub.*", le!="+Inf"}[5m] offset 1h30m)))',
            {"x_bucket"},
        ),
        (
            "sum(rate(a_total[1m])) without (operation) / ignoring (status) group_left (workspace_id) b",
            {"a_total", "b"},
        ),
        ("a > bool 2 and on (provider) b_p95:all unless c or vector(1)", {"a", "b_p95:all", "c"}),
        ('label_replace(up{job="x"}, "dst", "$1", "src", "(.*)")', {"up"}),
        ('{__name__="crm_named"} + {__name__=~"crm_.*"}', {"crm_named", '__name__=~"crm_.*"'}),
        ("max_over_time(rate(d_total[$__rate_interval])[1h:5m]) * 1e3 + 0x10 - Inf # a comment", {"d_total"}),
        ('topk(5, count_values("value", e)) @ start()', {"e"}),
    ],
)
def test_promql_metric_names_skip_functions_keywords_labels_and_durations(
    expr: str, expected: set[str]
) -> None:
    assert promql_metric_names(expr) == expected


def test_the_checker_reports_a_planted_unknown_metric() -> None:
    known = known_names()
    assert unknown_metrics("rate(crm_no_such_metric_total[5m])", known) == {"crm_no_such_metric_total"}
    # a counter read without its _total suffix is not what /metrics shows
    assert unknown_metrics("rate(crm_sync_errors[5m])", known) == {"crm_sync_errors"}
    assert unknown_metrics("rate(crm_sync_errors_total[5m])", known) == set()


def test_exported_names_come_from_the_exposition() -> None:
    exported = exported_names()
    assert {
        "crm_sync_errors_total",
        "crm_rate_limit_hits_total",
        "crm_sync_duration_seconds_bucket",
        "crm_sync_duration_seconds_count",
        "crm_sync_duration_seconds_sum",
        "crm_connection_status",
        "crm_connection_failures_total",
        "crm_webhook_latency_seconds_bucket",
    } <= exported
    # the P95 series are recorded by Prometheus, never exported by Conduit
    assert not exported & set(recording_rules())


# --- recording rules -----------------------------------------------------------------------


def test_promtool_accepts_the_recording_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RECORDING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(recording_rules())} rules found" in result.stdout


def test_promtool_unit_tests_compute_each_recorded_p95() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RECORDING_TEST.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES_DIR,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cases = yaml.safe_load(RECORDING_TEST.read_text())["tests"]
    tested = {
        name
        for case in cases
        for check in case["promql_expr_test"]
        for name in promql_metric_names(check["expr"])
    }
    assert tested == set(recording_rules())


def test_every_p95_the_playbook_names_is_recorded_per_provider() -> None:
    recorded = recording_rules()
    assert set(recorded) >= PLAYBOOK_P95
    for name in ("crm_webhook_latency_seconds_p95", "crm_sync_duration_seconds_p95"):
        assert "sum by (le, provider) (rate(" in recorded[name] and "[5m]" in recorded[name], name
        assert recorded[name].startswith("histogram_quantile(0.95, "), name
    assert recorded["webhook_latency_p95"] == "crm_webhook_latency_seconds_p95"


def test_each_alerted_p95_is_the_recorded_one_against_2_seconds() -> None:
    """The dashboard's P95 panels and the alerts can never disagree about what P95 means."""
    alerts, recorded = alert_rules(), recording_rules()
    for alert, series in ALERT_P95.items():
        assert alerts[alert] == f"{recorded[series]} > 2", alert


def test_rules_read_only_exported_or_recorded_metrics() -> None:
    exported = set(exported_names())
    seen: set[str] = set()
    for name, expr in recording_rules().items():
        # a rule may read an exported metric or a series recorded before it in its group
        assert unknown_metrics(expr, exported | seen) == set(), name
        assert promql_metric_names(expr), name
        seen.add(name)
    for alert, expr in alert_rules().items():
        assert unknown_metrics(expr, known_names()) == set(), alert
        assert promql_metric_names(expr), alert


# --- the dashboard ---------------------------------------------------------------------------


def test_dashboard_is_provisioning_ready() -> None:
    board = dashboard()
    assert board["uid"] == "conduit-crm" and board["title"] == "Conduit CRM"
    assert board.get("id") is None  # Grafana assigns ids; a fixed one collides on import
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels():
        assert panel["datasource"] == datasource, panel["title"]
        assert all(target["datasource"] == datasource for target in panel["targets"]), panel["title"]


def test_every_panel_has_a_unique_id_a_place_and_a_query() -> None:
    everything = dashboard()["panels"]
    ids = [panel["id"] for panel in everything]
    assert len(ids) == len(set(ids)) and all(isinstance(pid, int) for pid in ids)
    boxes = []
    for panel in everything:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), panel["title"]
        assert grid["h"] > 0 and grid["w"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel[
            "title"
        ]
        boxes.append((grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"], panel["title"]))
    for i, (x1, y1, x2, y2, title) in enumerate(boxes):
        for a1, b1, a2, b2, other in boxes[i + 1 :]:
            assert x2 <= a1 or a2 <= x1 or y2 <= b1 or b2 <= y1, f"{title} overlaps {other}"
    for panel in panels():
        targets = panel["targets"]
        assert targets, panel["title"]
        assert all(target["expr"].strip() and "legendFormat" in target for target in targets), panel["title"]
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_panel_query_reads_only_metrics_conduit_exports_or_records() -> None:
    known = known_names()
    for expr, title in panel_exprs().items():
        assert promql_metric_names(expr), title
        assert unknown_metrics(expr, known) == set(), title


def test_every_playbook_dashboard_query_is_a_panel_as_written() -> None:
    exprs = panel_exprs()
    for query in PLAYBOOK_QUERIES:
        assert query in exprs, query


def test_the_playbooks_webhook_p95_panel_points_to_the_true_one() -> None:
    """The playbook titles its crm_sync_duration_seconds query "Webhook latency P95": the panel keeps
    it and says where the webhook latency is; that panel reads the recorded series."""
    exprs = panel_exprs()
    by_title = {panel["title"]: panel for panel in panels()}
    as_written = by_title[exprs["histogram_quantile(0.95, rate(crm_sync_duration_seconds_bucket[5m]))"]]
    true_one = by_title[exprs["crm_webhook_latency_seconds_p95"]]
    assert true_one["title"] in as_written["description"]
    assert "crm_sync_duration_seconds" in as_written["description"]
    for name in ("crm_webhook_latency_seconds_p95", "crm_sync_duration_seconds_p95", "crm_connection_status"):
        assert any(name in promql_metric_names(expr) for expr in exprs), name


def test_provisioning_file_loads_the_dashboard_folder() -> None:
    config = yaml.safe_load(PROVISIONING.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert provider["folder"] == "Conduit"


# --- against the seed runbook --------------------------------------------------------------


def playbook_text() -> str:
    for folder in SEED_FOLDERS:
        if (folder / PLAYBOOK_NAME).exists():
            return (folder / PLAYBOOK_NAME).read_text(encoding="utf-8")
    places = " nor ".join(str(folder) for folder in SEED_FOLDERS)
    pytest.skip(f"seed runbook {PLAYBOOK_NAME} is in neither {places}; PLAYBOOK_QUERIES is checked alone")


def test_the_seed_playbooks_dashboard_queries_are_the_panels() -> None:
    section = playbook_text().split("Dashboard Queries", 1)[1]
    block = re.search(r"```promql\n(.*?)```", section, re.DOTALL)
    assert block is not None
    queries = [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert queries == PLAYBOOK_QUERIES
    exprs = panel_exprs()
    assert all(query in exprs for query in queries)


def test_the_seed_playbooks_p95_names_are_recorded() -> None:
    named = set(re.findall(r"\b[a-z_]+_p95\b", playbook_text()))
    assert named == {"crm_webhook_latency_seconds_p95", "webhook_latency_p95"}
    assert named <= set(recording_rules())
