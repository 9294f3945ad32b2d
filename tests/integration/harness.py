"""Runs the walking skeleton's two apps on real uvicorn servers on loopback ports."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
