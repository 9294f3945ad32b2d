"""Jaeger's and Prometheus's configuration files, generated into the run folder on every start.

Jaeger v2 is an OpenTelemetry Collector distribution: its configuration names the receivers
(OTLP), the storage (memory) and the query extension (HTTP API and UI). Without ``--config`` it
would run its embedded all-in-one configuration, which listens on eleven more ports (Jaeger and
Zipkin receivers, sampling, zpages, expvar, health) and serves the query API on every interface;
this one binds only what the suite uses, to 127.0.0.1.

Prometheus scrapes every process of the suite: each service of services.toml with a ``metrics``
URL, the consumer-lag exporter, Jaeger's own telemetry and Prometheus itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from .layout import ALERT_RULES, Layout
from .services import Service

# Every scrape costs Prometheus and the target (each service renders its metrics) at rest: 15 s
# is a third of the 5 s it was. The alert rules' windows are 5 m and longer, and the lag
# exporter reads every 15 s anyway (docs/performance.md, Idle).
SCRAPE_INTERVAL = "15s"
SCRAPE_TIMEOUT = "10s"  # must not exceed the interval (Prometheus's default is 10 s)
RETENTION = "2d"
JAEGER_MAX_TRACES = 50_000
# `zerocontact kafka lag-exporter --port 9308` (docs/observability.md): scraped at this address
# unless services.toml declares a program whose metrics URL is on that port.
LAG_EXPORTER_JOB = "kafka-lag-exporter"
LAG_EXPORTER_PORT = 9308

Yaml = dict[str, "Yaml"] | list["Yaml"] | str | int | bool


def to_yaml(value: Yaml, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists, strings, integers and booleans (no PyYAML here).

    Strings are double-quoted JSON strings, which YAML reads as the same string.
    """
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}\n")
        return "".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                # "- " then the mapping's first key on the same line, the others aligned below it.
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body[len(pad) + 2 :]}")
            elif isinstance(item, list) and item:
                lines.append(f"{pad}-\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}- {_scalar(item)}\n")
        return "".join(lines)
    return f"{pad}{_scalar(value)}\n"


def _scalar(value: Yaml) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "{}" if isinstance(value, dict) else "[]"


def jaeger_config(layout: Layout) -> dict[str, Yaml]:
    """Jaeger v2: OTLP in (gRPC and HTTP), memory storage, query API and UI, own metrics."""
    loopback = "127.0.0.1"
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "detailed",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": loopback,
                                        "port": layout.jaeger_metrics_port,
                                    }
                                }
                            }
                        }
                    ],
                },
                "logs": {"level": "info", "encoding": "json"},
            },
        },
        "extensions": {
            "jaeger_storage": {
                "backends": {"memstore": {"memory": {"max_traces": JAEGER_MAX_TRACES}}}
            },
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                # Jaeger's own query spans would go nowhere useful (no tracer is configured).
                "enable_tracing": False,
                "http": {"endpoint": f"{loopback}:{layout.jaeger_ui_port}"},
                "grpc": {"endpoint": f"{loopback}:{layout.jaeger_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{loopback}:{layout.otlp_grpc_port}"},
                    "http": {"endpoint": f"{loopback}:{layout.otlp_http_port}"},
                }
            }
        },
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def _job(name: str, target: str, path: str = "/metrics") -> dict[str, Yaml]:
    job: dict[str, Yaml] = {"job_name": name}
    if path != "/metrics":
        job["metrics_path"] = path
    job["static_configs"] = [{"targets": [target]}]
    return job


def scrape_jobs(layout: Layout, services: list[Service]) -> list[dict[str, Yaml]]:
    """One job per process: Prometheus, Jaeger, every service with metrics, the lag exporter."""
    jobs = [
        _job("prometheus", f"127.0.0.1:{layout.prometheus_port}"),
        _job("jaeger", f"127.0.0.1:{layout.jaeger_metrics_port}"),
    ]
    ports = set()
    for service in services:
        if not service.metrics:
            continue
        url = urlsplit(service.metrics)
        jobs.append(_job(service.name, url.netloc, url.path or "/metrics"))
        ports.add(url.port)
    if LAG_EXPORTER_PORT not in ports:
        jobs.append(_job(LAG_EXPORTER_JOB, f"127.0.0.1:{LAG_EXPORTER_PORT}"))
    return jobs


def prometheus_config(
    layout: Layout, services: list[Service], rules: Path | None = ALERT_RULES
) -> dict[str, Yaml]:
    config: dict[str, Yaml] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_TIMEOUT,
            "evaluation_interval": SCRAPE_INTERVAL,
            "external_labels": {"suite": "zerocontact-local"},
        },
    }
    # Optional: another change adds deploy/monitoring/alerts.yaml. Checked on every start.
    if rules is not None and rules.exists():
        config["rule_files"] = [str(rules)]
    config["scrape_configs"] = list(scrape_jobs(layout, services))
    return config


def prometheus_command(layout: Layout) -> list[str]:
    return [
        str(layout.prometheus_bin),
        f"--config.file={layout.prometheus_config}",
        f"--storage.tsdb.path={layout.prometheus_data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{layout.prometheus_port}",
        # POST /-/reload (re-reads the configuration and the rule files) and /-/quit.
        "--web.enable-lifecycle",
        "--log.format=json",
    ]


def jaeger_command(layout: Layout) -> list[str]:
    return [str(layout.jaeger_bin), f"--config={layout.jaeger_config}"]


_HEADER = "# Generated by deploy/local/engines.py; overwritten on every start.\n"


def write_observability_configs(layout: Layout, services: list[Service]) -> None:
    for path in (layout.jaeger_config, layout.prometheus_config):
        path.parent.mkdir(parents=True, exist_ok=True)
    layout.prometheus_data.mkdir(parents=True, exist_ok=True)
    layout.jaeger_config.write_text(_HEADER + to_yaml(jaeger_config(layout)))
    layout.prometheus_config.write_text(_HEADER + to_yaml(prometheus_config(layout, services)))
