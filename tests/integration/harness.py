"""Runs the walking skeleton's two apps on real uvicorn servers on loopback ports."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

# Every name a test makes starts with t<RUN_ID>, so the run can remove what it created.
RUN_ID = uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class Engines:
    """Where the session's engines answer, and how they were obtained."""

    kafka_bootstrap: str
    mongodb_uri: str
    origin: str  # "external", "testcontainers" or "embedded"


def random_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


ROOT = Path(__file__).resolve().parents[2]


def start_signals_worker(
    engines: Engines,
    *,
    app_id: str,
    data_dir: Path,
    log: Path,
    topics: Mapping[str, str],
    level: str = "warn",
) -> tuple[subprocess.Popen[bytes], int]:
    """The real signals worker (``python -m zerocontact.signals worker``) as a subprocess.

    ``topics`` maps its topic settings to names, e.g. ``{"loan": ..., "identity": ...,
    "risk": ..., "marketing": ..., "engagement": ...}`` (``ZC_SIGNALS_<NAME>_TOPIC``); any not
    given keeps the catalog's name; ``level`` is its log level. Returns the process and its
    web port (/readyz).
    """
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": engines.kafka_bootstrap,
        "ZC_SIGNALS_APP_ID": app_id,
        "ZC_SIGNALS_DATA_DIR": str(data_dir),
        "ZC_SIGNALS_HTTP_PORT": str(port),
        "ZC_SIGNALS_PRODUCER_LINGER_MS": "1",
        "ZC_SIGNALS_SESSION_TIMEOUT_S": "6",
        **{f"ZC_SIGNALS_{name.upper()}_TOPIC": topic for name, topic in topics.items()},
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "zerocontact.signals", "worker", "-l", level],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return process, port


def stop_process(process: subprocess.Popen[bytes], *, within_s: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``within_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(within_s)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class RunningApp:
    app: FastAPI
    url: str
    client: httpx.AsyncClient


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[RunningApp]:
    """Serve ``app`` over real HTTP on a free loopback port until the block ends."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            yield RunningApp(app, url, client)
        finally:
            server.should_exit = True
            await task


async def eventually(probe, *, within_s: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Await ``probe()`` until it returns something truthy; return that, or fail after ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within_s}s (last: {result!r})")
        await asyncio.sleep(interval)


async def count_records(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds now (end minus beginning offsets)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.assignment() or {TopicPartition(topic, 0)}
        ends = await consumer.end_offsets(list(partitions))
        starts = await consumer.beginning_offsets(list(partitions))
    finally:
        await consumer.stop()
    return sum(ends[tp] - starts[tp] for tp in ends)
