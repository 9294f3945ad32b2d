"""Fetch, start, wait for and stop the local engines (Kafka, FerretDB, Jaeger, Prometheus) and
the services.

Standard library only: it runs before anything else is installed. Invoke it with the
project's venv interpreter, because supervisord is looked up next to ``sys.executable``::

    .venv/bin/python deploy/local/engines.py fetch [--engines-only]
    .venv/bin/python deploy/local/engines.py start [--engines-only [--observability]]
        [--observability-only] [--if-needed] [--timeout 90]
    .venv/bin/python deploy/local/engines.py up | status | down
    .venv/bin/python deploy/local/engines.py stop [--observability-only | --services-only]

Environment: ``ZC_KAFKA_PORT`` (9092), ``ZC_KAFKA_CONTROLLER_PORT`` (9093),
``ZC_KAFKA_SASL_PORT`` (9094), ``ZC_MONGODB_PORT`` (27017), ``ZC_JAEGER_UI_PORT`` (16686),
``ZC_JAEGER_GRPC_PORT`` (16685), ``ZC_JAEGER_METRICS_PORT`` (8888), ``ZC_OTLP_PORT`` (4317),
``ZC_OTLP_HTTP_PORT`` (4318), ``ZC_PROMETHEUS_PORT`` (9090), ``ZC_LOCAL_HOME``
(``<repo>/.cache``). See docs/engines.md.
"""

from __future__ import annotations

import argparse
import sys

from .common import EngineError, log
from .demo import print_demo
from .fetch import fetch
from .layout import ALERT_RULES, ROOT, Layout
from .lifecycle import locked, start, status, stop
from .services import Service, load_services


def endpoints(layout: Layout, services: list[Service]) -> list[tuple[str, str, str]]:
    rows = [
        ("kafka", f"{layout.kafka_bootstrap}", "KAFKA_BOOTSTRAP_SERVERS"),
        (
            "kafka SASL_SSL",
            layout.kafka_sasl_bootstrap,
            f"SCRAM-SHA-512, CA {layout.kafka_tls / 'ca.pem'}",
        ),
        ("mongodb (ferretdb)", layout.mongodb_uri, "MONGODB_URI"),
        ("jaeger query API", layout.jaeger_url, "GET /api/traces/<trace id> (no web UI built)"),
        (
            "jaeger OTLP",
            f"{layout.otlp_endpoint} (gRPC), {layout.otlp_http_endpoint} (HTTP)",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "prometheus",
            layout.prometheus_url,
            "API /api/v1/targets, /api/v1/query (no web UI built)"
            + (f"; rules {ALERT_RULES.relative_to(ROOT)}" if ALERT_RULES.exists() else ""),
        ),
    ]
    for service in services:
        where = f"http://127.0.0.1:{service.port}" if service.port else "-"
        rows.append((service.name, where, f"health {service.health or '-'}"))
        if service.metrics:
            rows.append((f"{service.name} metrics", service.metrics, "prometheus"))
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    header = ("component", "endpoint", "notes")
    width = [max(w, len(h)) for w, h in zip(width, header, strict=True)]
    for row in [header, tuple("-" * w for w in width), *rows]:
        log("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser(
        "fetch",
        help="download the Kafka jars, build FerretDB, Jaeger and Prometheus into the cache",
    )
    fetch_cmd.add_argument(
        "--engines-only",
        action="store_true",
        help="Kafka and FerretDB only (no Jaeger, Prometheus)",
    )
    for name in ("start", "up"):
        sub = commands.add_parser(name, help="start under supervisord and wait until ready")
        if name == "start":
            sub.add_argument("--engines-only", action="store_true", help="Kafka and FerretDB only")
            sub.add_argument(
                "--observability",
                action="store_true",
                help="with --engines-only: Jaeger and Prometheus too",
            )
            sub.add_argument(
                "--observability-only",
                action="store_true",
                help="Jaeger and Prometheus only (e.g. next to external Kafka and MongoDB)",
            )
            sub.add_argument(
                "--if-needed", action="store_true", help="do nothing if the engines already answer"
            )
        sub.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    stop_cmd = commands.add_parser("stop", help="stop supervisord and everything it runs")
    stop_cmd.add_argument(
        "--observability-only",
        action="store_true",
        help="stop Jaeger and Prometheus only (supervisord too if nothing else runs)",
    )
    stop_cmd.add_argument(
        "--services-only",
        action="store_true",
        help="stop the programs of services.toml only, leave the engines running",
    )
    commands.add_parser("down", help="same as stop")
    commands.add_parser("status", help="supervisorctl status")
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env()
        if args.command == "fetch":
            layout.home.mkdir(parents=True, exist_ok=True)
            with locked(layout):
                fetch(layout, observability=not args.engines_only)
        elif args.command == "start":
            if args.observability_only and (args.engines_only or args.observability):
                parser.error("--observability-only goes alone")
            start(
                layout,
                engines_only=args.engines_only,
                if_needed=args.if_needed,
                timeout=args.timeout,
                observability=args.observability or None,
                observability_only=args.observability_only,
            )
        elif args.command == "up":
            services = start(layout, engines_only=False, if_needed=False, timeout=args.timeout)
            print_table(endpoints(layout, services))
            print_demo(layout)
        elif args.command in ("stop", "down"):
            only: list[str] | None = None
            if getattr(args, "observability_only", False) and getattr(args, "services_only", False):
                parser.error("--observability-only and --services-only exclude each other")
            if getattr(args, "observability_only", False):
                only = ["jaeger", "prometheus"]
            elif getattr(args, "services_only", False):
                only = [service.name for service in load_services()]
            stop(layout, only=only)
        elif args.command == "status":
            return status(layout)
    except EngineError as exc:
        print(f"engines.py {args.command}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"engines.py {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
