"""``zerocontact kafka lag-exporter``: every consumer group's lag, from the broker, for Prometheus.

Every ``--interval`` seconds it lists the consumer groups, reads their committed offsets and the
partitions' end offsets (:mod:`.kafka.lag`), and serves the last reading on ``--port``
(``/metrics``, prometheus_client's own HTTP server) as ``zc_consumer_group_lag`` with
``zc_consumer_group_lag_last_success_timestamp_seconds``. A broker that stops answering
leaves the last reading served and its timestamp ageing (alert on that, not on a gap); the
exporter keeps trying and never exits for it. Settings it cannot use end it with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import typer
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from .cli_support import connection_or_exit, fail
from .kafka.lag import LagCollector, LagReader
from .logging import configure_logging

__all__ = ["lag_exporter"]

log = logging.getLogger("zerocontact.lag_exporter")


def lag_exporter(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Serve /metrics on this port.")
    ] = 9308,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",
    bootstrap: Annotated[
        str,
        typer.Option(
            "--bootstrap",
            envvar="KAFKA_BOOTSTRAP_SERVERS",
            help="Kafka bootstrap servers; TLS and SASL come from KAFKA_SECURITY_PROTOCOL etc.",
        ),
    ] = "127.0.0.1:9092",
    interval: Annotated[
        float, typer.Option("--interval", min=1.0, help="Seconds between two readings.")
    ] = 15.0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.5, help="Seconds one reading may take.")
    ] = 10.0,
) -> None:
    """Serve every consumer group's lag (end offset - committed offset) for Prometheus."""
    connection = connection_or_exit(bootstrap)
    configure_logging("lag-exporter")
    # aiokafka logs every failed connection attempt with a traceback; one warning per reading
    # that failed says it (the reading's own error line below).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    collector = LagCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        fail(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}")
    reader = LagReader(connection, request_timeout_ms=int(timeout * 1000))
    log.info(
        "lag exporter serving /metrics",
        extra={"port": server.server_port, "bootstrap": bootstrap, "interval_s": interval},
    )
    try:
        asyncio.run(_export(reader, collector, interval=interval, limit_s=timeout * 2))
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


async def _export(
    reader: LagReader, collector: LagCollector, *, interval: float, limit_s: float
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connected = False
    try:
        while not stop.is_set():
            try:
                async with asyncio.timeout(limit_s):
                    if not connected:
                        await reader.start()
                        connected = True
                    collector.reading = await reader.read()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "reading consumer-group lag failed; serving the last reading",
                    extra={"error": str(exc) or type(exc).__name__},
                )
                if not connected:
                    await reader.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        await reader.stop()
