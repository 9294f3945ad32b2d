"""The local Jaeger and Prometheus are real: a span sent over OTLP is found in Jaeger's query
API, and Prometheus scrapes the jobs engines.py generated, itself included."""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ObservabilityEngines
from tests.integration.harness import RUN_ID

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services.toml"
ALERT_RULES = ROOT / "deploy" / "monitoring" / "alerts.yaml"


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()``'s first truthy result, polled every 0.25 s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def _otlp_span(trace_id: str, span_id: str, service: str) -> dict[str, Any]:
    """One span in OTLP/JSON (ids in hex, times as decimal strings of nanoseconds)."""
    now = time.time_ns()
    attribute = {"key": "service.name", "value": {"stringValue": service}}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attribute]},
                "scopeSpans": [
                    {
                        "scope": {"name": "tests.integration"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "loan.events.v1 publish",
                                "kind": 4,  # SPAN_KIND_PRODUCER
                                "startTimeUnixNano": str(now - 2_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": [
                                    {"key": "messaging.system", "value": {"stringValue": "kafka"}}
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_span_sent_over_otlp_is_found_in_jaeger(
    observability_engines: ObservabilityEngines,
) -> None:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    service = f"zc-test-{RUN_ID}"
    with httpx.Client(timeout=5) as client:
        sent = client.post(
            f"{observability_engines.otlp_http_endpoint}/v1/traces",
            json=_otlp_span(trace_id, span_id, service),
        )
        assert sent.status_code == 200, sent.text

        def trace() -> dict[str, Any] | None:
            found = client.get(f"{observability_engines.jaeger_url}/api/traces/{trace_id}")
            return found.json()["data"][0] if found.status_code == 200 else None

        stored = _eventually(trace, timeout=15)
        assert stored is not None, f"trace {trace_id} not in Jaeger"
        services = client.get(f"{observability_engines.jaeger_url}/api/services").json()["data"]
    assert stored["traceID"] == trace_id
    (span,) = stored["spans"]
    assert span["spanID"] == span_id
    assert span["operationName"] == "loan.events.v1 publish"
    assert stored["processes"][span["processID"]]["serviceName"] == service
    assert service in services


def _expected_jobs() -> set[str]:
    services = tomllib.loads(SERVICES.read_text()).get("service", [])
    jobs = {"prometheus", "jaeger"} | {s["name"] for s in services if s.get("metrics")}
    lag_exporter_declared = any(":9308/" in s.get("metrics", "") for s in services)
    return jobs if lag_exporter_declared else jobs | {"kafka-lag-exporter"}


def test_prometheus_scrapes_every_process_of_the_suite(
    observability_engines: ObservabilityEngines,
) -> None:
    url = observability_engines.prometheus_url
    with httpx.Client(timeout=5) as client:

        def active() -> list[dict[str, Any]]:
            return client.get(f"{url}/api/v1/targets").json()["data"]["activeTargets"]

        # Discovered targets reach the scrape manager up to 5 s after a start.
        targets = _eventually(active, timeout=20)
        jobs = {target["labels"]["job"] for target in targets}
        assert jobs == _expected_jobs()
        by_job = {target["labels"]["job"]: target for target in targets}
        assert by_job["prometheus"]["scrapeUrl"] == f"{url}/metrics"
        assert by_job["gateway"]["scrapeUrl"] == "http://127.0.0.1:8051/metrics"

        def up(job: str) -> bool:
            query = {"query": f'up{{job="{job}"}}'}
            result = client.get(f"{url}/api/v1/query", params=query).json()["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"

        # The first scrape of each target follows within one interval (15 s) of its discovery.
        assert _eventually(lambda: up("prometheus"), timeout=45), (
            "Prometheus does not scrape itself"
        )
        assert _eventually(lambda: up("jaeger"), timeout=45), "Jaeger's metrics are not scraped"


def test_prometheus_reloads_its_configuration(
    observability_engines: ObservabilityEngines,
) -> None:
    """--web.enable-lifecycle: tests (and developers) can reload the rules without a restart."""
    url = observability_engines.prometheus_url
    with httpx.Client(timeout=10) as client:
        assert client.post(f"{url}/-/reload").status_code == 200
        status = client.get(f"{url}/api/v1/status/runtimeinfo").json()["data"]
        flags = client.get(f"{url}/api/v1/status/flags").json()["data"]
    assert status["reloadConfigSuccess"] is True
    assert flags["storage.tsdb.retention.time"] == "2d"
    assert flags["web.listen-address"].startswith("127.0.0.1:")


def test_prometheus_loads_the_alert_rules(observability_engines: ObservabilityEngines) -> None:
    if not ALERT_RULES.exists():
        pytest.skip("deploy/monitoring/alerts.yaml does not exist yet")
    with httpx.Client(timeout=10) as client:
        groups = client.get(f"{observability_engines.prometheus_url}/api/v1/rules").json()
    # The configuration names the file only if it existed when Prometheus started.
    assert groups["data"]["groups"], (
        "no rule group loaded from deploy/monitoring/alerts.yaml: if Prometheus was started "
        "before the file existed, restart it (engines.py stop --observability-only)"
    )
