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
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

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
ENGINES = ROOT / "deploy" / "local" / "engines.py"

# Stops what a test session started if the session dies first (a crash runs no teardown), so
# nothing is left answering the next run on the same ports.
_WATCHDOG = """
import os, subprocess, sys, time
pid, engines = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
subprocess.run([sys.executable, engines, "stop", *sys.argv[3:]], check=False)
"""


def local_home() -> Path:
    """The cache engines.py runs in (``ZC_LOCAL_HOME``, else the checkout's ``.cache``)."""
    return Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache").expanduser().resolve()


@contextmanager
def engines_started(
    start: list[str], stop: list[str], *, refused: Callable[[str], NoReturn]
) -> Iterator[None]:
    """``engines.py start <start>``; what it started is stopped with ``engines.py stop <stop>``
    at the end, or by a watchdog should this process die first. ``refused`` gets the one-line
    error of a failed start."""
    started = subprocess.run(
        [sys.executable, str(ENGINES), "start", *start],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if started.returncode != 0:
        refused(started.stderr.strip())
    if "started" not in started.stdout:  # it was all running already: someone else's to stop
        yield
        return
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(ENGINES), *stop],
        cwd=ROOT, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        watchdog.kill()  # a normal end: stop them here, and nobody else later
        watchdog.wait()
        subprocess.run([sys.executable, str(ENGINES), "stop", *stop], cwd=ROOT, check=False)


def start_signals_worker(
    engines: Engines,
    *,
    app_id: str,
    data_dir: Path,
    log: Path,
    topics: Mapping[str, str],
    level: str = "warn",
    session_timeout_s: float = 6,
) -> tuple[subprocess.Popen[bytes], int]:
    """The real signals worker (``python -m zerocontact.signals worker``) as a subprocess.

    ``topics`` maps its topic settings to names, e.g. ``{"loan": ..., "identity": ...,
    "risk": ..., "marketing": ..., "engagement": ...}`` (``ZC_SIGNALS_<NAME>_TOPIC``); any not
    given keeps the catalog's name; ``level`` is its log level; ``session_timeout_s`` is short
    by default so a killed worker's partitions move on quickly. Returns the process and its
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
        "ZC_SIGNALS_SESSION_TIMEOUT_S": str(session_timeout_s),
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
            process.wait()  # reaped: an unreaped child is a ResourceWarning (an error in tests)


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
