"""The gateway's /metrics parsed as Prometheus text, and the alarm definitions in
deploy/alarms checked against what a running gateway actually serves."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[3]
ALARMS = REPO_ROOT / "deploy" / "alarms"
README = REPO_ROOT / "README.md"
# The only attributes a metric may carry (plus Prometheus's own `le`).
ALLOWED_LABELS = {"reason", "outcome", "backend", "le"}
# The mirror-failure reasons reported from zero.
REASONS = {"backend_unavailable", "timeout", "checksum", "conflict_exhausted", "catalog", "client_reported"}
COMPARISONS = {
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
}


@pytest.fixture(scope="module")
def served(gateway: Any) -> dict[str, Any]:
    """The metric families a gateway serves after one append and one load."""
    task = f"obs-{uuid.uuid4().hex[:12]}"
    url = f"{gateway.url}/v1/tasks/{task}/projects/p/sessions/{uuid.uuid4()}/entries"
    headers = gateway.headers(task)
    resp = httpx.post(url, json={"entries": [{"type": "user", "uuid": str(uuid.uuid4())}]}, headers=headers)
    assert resp.status_code == 200, resp.text
    resp = httpx.get(url, headers=headers)
    assert resp.status_code == 200, resp.text
    resp = httpx.get(f"{gateway.url}/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    return families


def sample_names(families: dict[str, Any]) -> set[str]:
    return {s.name for f in families.values() for s in f.samples}


def test_metrics_parse_as_prometheus_text_with_the_documented_types(served: dict[str, Any]) -> None:
    expected = {
        "tg_append_duration_seconds": "histogram",
        "tg_load_duration_seconds": "histogram",
        "tg_append_bytes_bytes": "histogram",
        "tg_append_entries": "histogram",
        "tg_load_parts": "histogram",
        "tg_mirror_failures": "counter",
        "tg_part_conflicts": "counter",
        "tg_backend_retries": "counter",
        "tg_checksum_mismatches": "counter",
        "tg_compactions": "counter",
        "tg_project_key_drift": "counter",
        "tg_requests_in_flight": "gauge",
        "tg_catalog_repair_backlog": "gauge",
        "tg_ready": "gauge",
    }
    for name, kind in expected.items():
        assert name in served, f"{name} not served; got {sorted(served)}"
        assert served[name].type == kind, f"{name} is a {served[name].type}, not a {kind}"
    counts = {s.name: s.value for s in served["tg_append_duration_seconds"].samples}
    assert counts["tg_append_duration_seconds_count"] >= 1
    assert {s.value for s in served["tg_ready"].samples} == {1.0}
    reasons = {s.labels["reason"] for s in served["tg_mirror_failures"].samples if "reason" in s.labels}
    assert REASONS <= reasons, f"reasons reported from zero: {sorted(reasons)}"


def test_metrics_carry_only_the_allowed_labels(served: dict[str, Any]) -> None:
    for family in served.values():
        if not family.name.startswith("tg_"):
            continue
        for sample in family.samples:
            extra = set(sample.labels) - ALLOWED_LABELS
            assert not extra, f"{sample.name} carries {sorted(extra)}"


def selectors(node: Any) -> list[str]:
    """Every metric name an expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        return [node.name] if node.name else []
    found: list[str] = []
    for attr in ("lhs", "rhs", "expr", "args", "param", "vector_selector"):
        child = getattr(node, attr, None)
        for c in child if isinstance(child, list) else [child]:
            if c is not None and type(c).__module__ == "promql_parser":
                found.extend(selectors(c))
    return found


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((ALARMS / "prometheus-rules.yml").read_text())
    groups = data["groups"]
    assert groups, "no rule groups"
    return [rule for group in groups for rule in group["rules"]]


def test_prometheus_rules_parse_and_select_only_served_metrics(
    rules: list[dict[str, Any]], served: dict[str, Any]
) -> None:
    names = sample_names(served)
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', README.read_text()))
    assert len(rules) == 5, [r.get("alert") for r in rules]
    for rule in rules:
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"]), rule
        expr = promql_parser.parse(rule["expr"])
        used = selectors(expr)
        assert used, f"{rule['alert']} selects no metric"
        for name in used:
            assert name in names, f"{rule['alert']} selects {name}, which the gateway does not serve"
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in {"page", "ticket"}
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"][key], f"{rule['alert']} has no {key}"
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}'s runbook #{anchor} is not in the README"


def test_a_rule_that_selects_an_unserved_metric_is_caught(served: dict[str, Any]) -> None:
    # The check above can fail: a misspelt metric is not among the served names.
    used = selectors(promql_parser.parse("increase(tg_mirror_failure_total[5m]) > 0"))
    assert used == ["tg_mirror_failure_total"]
    assert used[0] not in sample_names(served)


@pytest.fixture(scope="module")
def alarms() -> dict[str, dict[str, Any]]:
    template = json.loads((ALARMS / "cloudwatch-alarms.json").read_text())
    resources = template["Resources"]
    assert all(r["Type"] == "AWS::CloudWatch::Alarm" for r in resources.values())
    return {name: r["Properties"] for name, r in resources.items()}


def prometheus_name(otel: str) -> str:
    """The family an OpenTelemetry instrument is served under, without its unit suffix."""
    return otel.replace(".", "_")


def test_cloudwatch_alarms_watch_exported_metrics_and_treat_missing_data_as_not_breaching(
    alarms: dict[str, dict[str, Any]], served: dict[str, Any]
) -> None:
    assert len(alarms) == 5, sorted(alarms)
    families = set(served)
    for name, alarm in alarms.items():
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["ComparisonOperator"] in COMPARISONS, name
        assert alarm["AlarmActions"], name
        assert alarm["AlarmName"].startswith("transcript-gateway-"), name
        if "Metrics" in alarm:
            ids = {m["Id"] for m in alarm["Metrics"]}
            metrics = [m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m]
            for m in alarm["Metrics"]:
                for ref in re.findall(r"\b[a-z][a-zA-Z0-9_]*\b", m.get("Expression", "")):
                    if ref.upper() != ref:
                        assert ref in ids, f"{name}: the expression names {ref}, not a metric of the alarm"
            assert sum(bool(m.get("ReturnData")) for m in alarm["Metrics"]) == 1, name
        else:
            metrics = [alarm["MetricName"]]
            assert ("Statistic" in alarm) != ("ExtendedStatistic" in alarm), name
        for metric in metrics:
            assert metric.startswith("tg."), f"{name} watches {metric}"
            assert prometheus_name(metric) in families or any(
                f.startswith(prometheus_name(metric) + "_") for f in families
            ), f"{name} watches {metric}, which the gateway does not export"


def test_the_collector_publishes_to_the_alarms_namespace(alarms: dict[str, dict[str, Any]]) -> None:
    template = json.loads((ALARMS / "cloudwatch-alarms.json").read_text())
    collector = yaml.safe_load((ALARMS / "otel-collector.yaml").read_text())
    assert collector["exporters"]["awsemf"]["namespace"] == template["Parameters"]["Namespace"]["Default"]
    assert "awsemf" in collector["service"]["pipelines"]["metrics"]["exporters"]
    for alarm in alarms.values():
        namespaces = [alarm.get("Namespace")] + [
            m["MetricStat"]["Metric"]["Namespace"] for m in alarm.get("Metrics", []) if "MetricStat" in m
        ]
        assert all(n == {"Ref": "Namespace"} for n in namespaces if n is not None)


def test_the_readme_explains_every_alarm(rules: list[dict[str, Any]], alarms: dict[str, dict[str, Any]]) -> None:
    text = README.read_text()
    section = text.split("## Observability", 1)[1].split("\n## ", 1)[0]
    for rule in rules:
        assert f"`{rule['alert']}`" in section, f"{rule['alert']} is not explained"
    for alarm in alarms.values():
        assert f"`{alarm['AlarmName']}`" in section, f"{alarm['AlarmName']} is not explained"
