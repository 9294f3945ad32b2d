"""What every fault scenario of tests/chaos/ shares: its engines, its names, its rows.

A scenario runs on the engines named by ``KAFKA_BOOTSTRAP_SERVERS``/``MONGODB_URI`` (the
runner's), or starts the embedded ones itself (``engines.py start --engines-only --if-needed``,
stopped afterwards if it started them), and prints one ``CHAOS-ROW {json}`` line per row it
measured. It exits 1 when a row lost or duplicated anything or an invariant failed (each named
on stderr).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from tests.integration.harness import ROOT, Engines, engines_started, free_port, local_home


@dataclass
class Row:
    """One line of the chaos table."""

    scenario: str
    faults: int = 0
    operations: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_s: float | None = None
    detail: str = ""
    failures: list[str] = field(default_factory=list)  # invariants that failed, for stderr

    def fail(self, invariant: str) -> None:
        """Record a broken invariant (printed on stderr; the scenario exits 1)."""
        self.failures.append(invariant)

    def print(self) -> None:
        row = {k: v for k, v in asdict(self).items() if k != "failures"}
        if row["recover_s"] is not None:
            row["recover_s"] = round(row["recover_s"], 3)
        print(f"CHAOS-ROW {json.dumps(row, ensure_ascii=False)}", flush=True)
        for failure in self.failures:
            print(f"{self.scenario}: {failure}", file=sys.stderr, flush=True)

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.failures


def finish(rows: list[Row]) -> int:
    """Print the rows; the exit status of the scenario."""
    for row in rows:
        row.print()
    return 0 if rows and all(row.passed for row in rows) else 1


@contextmanager
def chaos_engines() -> Iterator[Engines]:
    """The runner's engines, or the embedded ones started for this run.

    SIGTERM ends the scenario like Ctrl-C does, so it stops the processes it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Engines(kafka, mongo, "external")
        return

    def refused(error: str) -> NoReturn:
        sys.exit(f"chaos: embedded engines did not start: {error}")

    with engines_started(["--engines-only", "--if-needed"], [], refused=refused):
        yield Engines(
            f"127.0.0.1:{os.environ.get('ZC_KAFKA_PORT', '9092')}",
            f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', '27017')}/",
            "embedded",
        )


def run_token(scenario: str) -> str:
    """``chaos-<scenario>-<hex>``: the prefix of every topic, group and database of one run."""
    return f"chaos-{scenario}-{uuid.uuid4().hex[:8]}"


def log_dir(token: str) -> Path:
    """Where a run's processes write their logs (kept for a post-mortem)."""
    path = local_home() / "logs" / "chaos" / token
    path.mkdir(parents=True, exist_ok=True)
    return path


async def create_topics(engines: Engines, topics: Mapping[str, int]) -> None:
    """Create ``topics`` (name -> partitions) with their ``.dlq`` twins (one partition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, partitions, 1) for name, partitions in topics.items()]
            + [NewTopic(f"{name}.dlq", 1, 1) for name in topics]
        )
    finally:
        await admin.close()


async def remove_run(engines: Engines, token: str) -> None:
    """Delete the run's topics and databases (names starting with ``token``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(token)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(engines.mongodb_uri)
    try:
        prefix = token.replace("-", "_")
        for name in await client.list_database_names():
            if name.startswith(prefix):
                await client.drop_database(name)
    finally:
        await client.close()


def database_name(token: str, role: str) -> str:
    """A database of the run (underscores: FerretDB refuses some characters)."""
    return f"{token}_{role}".replace("-", "_")[:60]


def start_app(
    factory: str, *, env: Mapping[str, str], log: Path, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``uvicorn --factory <factory>`` as a subprocess on a free port; (process, port)."""
    port = port or free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, "OTEL_SDK_DISABLED": "true", **env},
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, port
