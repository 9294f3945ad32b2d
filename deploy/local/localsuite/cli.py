"""Fetch, start, wait for and stop the embedded engines (Kafka, FerretDB) and the services.

Standard library only: it runs before anything else is installed. Invoke it with the
project's venv interpreter, because supervisord is looked up next to ``sys.executable``::

    .venv/bin/python deploy/local/engines.py fetch
    .venv/bin/python deploy/local/engines.py start [--engines-only] [--if-needed] [--timeout 90]
    .venv/bin/python deploy/local/engines.py up | status | stop | down

Environment: ``ZC_KAFKA_PORT`` (9092), ``ZC_KAFKA_CONTROLLER_PORT`` (9093),
``ZC_KAFKA_SASL_PORT`` (9094), ``ZC_MONGODB_PORT`` (27017), ``ZC_LOCAL_HOME``
(``<repo>/.cache``). See docs/engines.md.
"""

from __future__ import annotations

import argparse
import sys

from .common import EngineError, log
from .fetch import fetch
from .layout import Layout
from .lifecycle import locked, start, status, stop
from .services import Service


def endpoints(layout: Layout, services: list[Service]) -> list[tuple[str, str, str]]:
    rows = [
        ("kafka", f"{layout.kafka_bootstrap}", "KAFKA_BOOTSTRAP_SERVERS"),
        (
            "kafka SASL_SSL",
            layout.kafka_sasl_bootstrap,
            f"SCRAM-SHA-512, CA {layout.kafka_tls / 'ca.pem'}",
        ),
        ("mongodb (ferretdb)", layout.mongodb_uri, "MONGODB_URI"),
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
    commands.add_parser("fetch", help="download the Kafka jars and build FerretDB into the cache")
    for name in ("start", "up"):
        sub = commands.add_parser(name, help="start under supervisord and wait until ready")
        if name == "start":
            sub.add_argument("--engines-only", action="store_true", help="Kafka and FerretDB only")
            sub.add_argument(
                "--if-needed", action="store_true", help="do nothing if the engines already answer"
            )
        sub.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    commands.add_parser("stop", help="stop supervisord and everything it runs")
    commands.add_parser("down", help="same as stop")
    commands.add_parser("status", help="supervisorctl status")
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env()
        if args.command == "fetch":
            layout.home.mkdir(parents=True, exist_ok=True)
            with locked(layout):
                fetch(layout)
        elif args.command == "start":
            start(
                layout,
                engines_only=args.engines_only,
                if_needed=args.if_needed,
                timeout=args.timeout,
            )
        elif args.command == "up":
            services = start(layout, engines_only=False, if_needed=False, timeout=args.timeout)
            print_table(endpoints(layout, services))
        elif args.command in ("stop", "down"):
            stop(layout)
        elif args.command == "status":
            return status(layout)
    except EngineError as exc:
        print(f"engines.py {args.command}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"engines.py {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
