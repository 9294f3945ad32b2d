"""The alert rules, dashboards and the monitoring component keep to docs/observability.md.

- every metric the rules and dashboards name is in the contract's table;
- every alert has a severity, a summary, a description and a runbook_url whose anchor exists;
- the generated PrometheusRule and dashboard copies are current;
- every workload is scraped on its metrics port by a PodMonitor, and sends spans to the collector;
- the dashboards are valid JSON with unique uids;
- with promtool installed, ``promtool check rules`` and ``promtool test rules`` pass.

The list of metric names comes from :func:`deploy.tools.prometheus_rule.metric_names_in_rules_and_dashboards`,
which an integration test can use to check that a running suite exports each of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.tools import prometheus_rule
from deploy.tools.prometheus_rule import (
    ALERTS,
    DASHBOARD_COPIES,
    RULE_OUTPUT,
    dashboard_files,
    metric_names_in_expression,
    metric_names_in_rules_and_dashboards,
    outputs,
    rule_groups,
    stray_copies,
)
from tests.unit.deploy_tooling import OVERLAYS, ROOT, of_kind, rendered, run
from zerocontact.platform.topics import load_catalog

OBSERVABILITY = ROOT / "docs" / "observability.md"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/zerocontact/zerocontact/blob/main/docs/runbook.md#"
COMPONENT = "../../components/monitoring"
# The metrics port of each workload (docs/observability.md, "Metrics").
METRICS_PORTS = {
    "skeleton-accounts": 8010,
    "skeleton-projection": 8011,
    "identity": 8001,
    "loan": 8002,
    "payroll": 8003,
    "marketing": 8004,
    "assistant": 8005,
    "gateway": 8051,
    "signals-risk": 6066,
    "kafka-lag-exporter": 9308,
}


def contract_metrics() -> set[str]:
    """The metric names in the table of docs/observability.md."""
    return set(re.findall(r"^\|\s*`(zc_[a-z0-9_]+)`\s*\|", OBSERVABILITY.read_text(), re.M))


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text (fenced code skipped)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def test_the_contract_table_is_read() -> None:
    assert {"zc_consumer_group_lag", "zc_loan_disbursement_seconds", "zc_engine_up"} <= (
        contract_metrics()
    )


def test_metric_names_are_found_in_expressions() -> None:
    expression = (
        'sum(rate(zc_loan_disbursement_seconds_bucket{le="1"}[5m])) / '
        "zc:loan_disbursement_slow:ratio_rate5m + on() up + zc_http_requests_total"
    )
    assert metric_names_in_expression(expression) == {
        "zc_loan_disbursement_seconds",
        "zc_http_requests_total",
    }
    assert github_anchors("# Runbook\n## Alerts\n### ZcTargetDown\n```\n# not a heading\n```") == {
        "runbook",
        "alerts",
        "zctargetdown",
    }


def test_every_metric_in_the_rules_and_dashboards_is_in_the_contract() -> None:
    used = metric_names_in_rules_and_dashboards()
    assert used, "no metric found: the extraction is broken"
    unknown = {
        name: sorted(where) for name, where in used.items() if name not in contract_metrics()
    }
    assert unknown == {}, "not in docs/observability.md's table (the contract)"
    assert set(used) >= {
        "zc_outbox_oldest_pending_seconds",
        "zc_consumer_group_lag",
        "zc_dead_letters_total",
        "zc_grpc_server_handled_total",
        "zc_loan_disbursement_seconds",
        "zc_payroll_batch_oldest_running_seconds",
        "zc_trust_sequencer_leader",
        "zc_engine_up",
    }


def test_every_alert_is_labelled_annotated_and_has_an_existing_runbook_section() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"
    assert len(names) >= 10
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_URL), (name, url)
        anchor = url.removeprefix(RUNBOOK_URL)
        assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"


def test_the_lag_alert_can_fire_within_two_minutes() -> None:
    # An integration test watches it fire in a local Prometheus: `for` must stay <= 1m.
    (lag,) = [a for a in alerts() if "zc_consumer_group_lag" in a["expr"]]
    assert lag.get("for", "0s") in {"0s", "30s", "1m"}


def test_the_generated_rule_and_dashboard_copies_are_current() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in outputs().items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "run `.venv/bin/python deploy/tools/prometheus_rule.py`"
    assert stray_copies() == []
    assert prometheus_rule.main(["--check"]) == 0
    generated = yaml.safe_load(RULE_OUTPUT.read_text())
    assert generated["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_dashboards_are_valid_json_with_unique_uids_and_shipped_by_the_component() -> None:
    uids: dict[str, str] = {}
    files = dashboard_files()
    assert {p.stem for p in files} >= {
        "overview", "identity", "loan", "payroll", "marketing", "gateway", "signals", "slo-310"
    }  # fmt: skip
    for path in files:
        dashboard = json.loads(path.read_text())
        uid = dashboard["uid"]
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", uid), (path.name, uid)
        assert uid not in uids, f"{path.name} and {uids[uid]} share uid {uid}"
        uids[uid] = path.name
        assert dashboard["title"] and dashboard["panels"], path.name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids are unique"
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                assert target["expr"].strip(), (path.name, panel["title"])
    kustomization = yaml.safe_load((DASHBOARD_COPIES.parent / "kustomization.yaml").read_text())
    shipped = {f for generator in kustomization["configMapGenerator"] for f in generator["files"]}
    assert shipped == {f"dashboards/{p.name}" for p in files}
    labels = kustomization["generatorOptions"]["labels"]
    assert labels["grafana_dashboard"] == "1"


def uses_monitoring(overlay: str) -> bool:
    path = ROOT / "deploy" / "k8s" / "overlays" / overlay / "kustomization.yaml"
    return COMPONENT in yaml.safe_load(path.read_text()).get("components", [])


def test_both_overlays_monitor_and_keep_the_network_policies_alongside() -> None:
    for overlay in ("dev", "prod"):
        assert uses_monitoring(overlay), overlay
    for overlay in OVERLAYS:
        path = ROOT / "deploy" / "k8s" / "overlays" / overlay / "kustomization.yaml"
        components = yaml.safe_load(path.read_text()).get("components", [])
        if COMPONENT in components:
            # the component's egress rule would otherwise isolate every pod it selects
            assert "../../components/network-policies" in components, overlay


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if uses_monitoring(o)])
def test_every_workload_is_scraped_on_its_metrics_port(overlay: str) -> None:
    objects = rendered(overlay)
    monitors = of_kind(objects, "PodMonitor") + of_kind(objects, "ServiceMonitor")
    assert of_kind(objects, "ServiceMonitor") == [], "PodMonitors only (pod-monitors.yaml)"
    deployments = of_kind(objects, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == set(METRICS_PORTS)
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        ports = {
            p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]
        }
        scraped = [
            endpoint
            for monitor in monitors
            if matches(monitor["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
            for endpoint in monitor["spec"]["podMetricsEndpoints"]
        ]
        assert scraped, f"{name}: no PodMonitor selects its pods"
        assert {(e["port"], e.get("path", "/metrics")) for e in scraped} == {("http", "/metrics")}
        assert ports["http"] == METRICS_PORTS[name], name
    for monitor in monitors:
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if uses_monitoring(o)])
def test_every_workload_sends_spans_to_the_collector(overlay: str) -> None:
    objects = rendered(overlay)
    (collector,) = of_kind(objects, "OpenTelemetryCollector")
    config = collector["spec"]["config"]
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["processors"][0] == "memory_limiter" and "batch" in pipeline["processors"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind
    assert "tail_sampling" not in config["processors"]
    assert not config["exporters"]["otlp"]["endpoint"].endswith(".invalid:4317"), (
        "the overlay sets the backend"
    )
    grpc_port = int(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1])
    expected = f"http://{collector['metadata']['name']}-collector:{grpc_port}"
    for deployment in of_kind(objects, "Deployment"):
        (container, *_) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == expected, deployment["metadata"]
    # ... and the NetworkPolicies let them reach it.
    (egress,) = [p for p in of_kind(objects, "NetworkPolicy")
                 if p["metadata"]["name"] == "services-egress-otel-collector"]  # fmt: skip
    assert egress["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": grpc_port}]


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if uses_monitoring(o)])
def test_monitoring_resources_carry_the_fields_their_crds_require(overlay: str) -> None:
    # No Prometheus Operator or OpenTelemetry Operator schema is available offline.
    objects = rendered(overlay)
    for monitor in of_kind(objects, "PodMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["selector"]["matchLabels"] and monitor["spec"]["podMetricsEndpoints"]
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item) and item["expr"]
    (collector,) = of_kind(objects, "OpenTelemetryCollector")
    assert collector["apiVersion"] == "opentelemetry.io/v1beta1"
    assert collector["spec"]["mode"] == "deployment"
    assert collector["spec"]["securityContext"]["readOnlyRootFilesystem"] is True
    dashboards = [c for c in of_kind(objects, "ConfigMap")
                  if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]  # fmt: skip
    assert len(dashboards) == len(dashboard_files())
    for configmap in dashboards:
        for text in configmap["data"].values():
            json.loads(text)


def test_the_lag_exporter_describes_every_catalog_topic_and_group_in_prod() -> None:
    objects = rendered("prod")
    (user,) = [u for u in of_kind(objects, "KafkaUser")
               if u["metadata"]["name"] == "kafka-lag-exporter"]  # fmt: skip
    acls = user["spec"]["authorization"]["acls"]
    described = {a["resource"]["name"] for a in acls if a["resource"]["type"] == "topic"}
    assert described == set(load_catalog().names)
    groups = {a["resource"]["name"] for a in acls if a["resource"]["type"] == "group"}
    assert {"loan", "zc-signals-risk"} <= groups  # committed offsets of every service's group
    assert all(a["operations"] == ["Describe"] for a in acls)


def promtool() -> Path:
    """promtool from .cache/tools/bin, PATH or the Go bin folder; skip the test without it."""
    candidates = [ROOT / ".cache" / "tools" / "bin" / "promtool"]
    if found := shutil.which("promtool"):
        candidates.append(Path(found))
    candidates.append(Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "promtool")
    for candidate in candidates:
        if candidate.exists():
            return candidate
    pytest.skip("promtool not installed (go install github.com/prometheus/prometheus/cmd/promtool)")


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = promtool()
    checked = run(tool, "check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(tool, "test", "rules", ALERTS.parent / "alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # every alert has at least one firing case in the unit tests
    tests = yaml.safe_load((ALERTS.parent / "alerts.test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {alert["alert"] for alert in alerts()}
