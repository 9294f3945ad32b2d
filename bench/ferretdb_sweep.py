"""What one periodic sweep costs the MongoDB-wire server on a loaded collection.

The outbox relays' crash-recovery sweep (`find({_outbox_pending: true})`) and the services'
polls (`{state: "EXECUTING"}`, ...) run every few seconds at rest. This fills a collection
with ``--documents`` documents, ``--pending`` of them pending, with the indexes the services
create, and runs each query ``--sweeps`` times: per sweep, the wall time and the server
process's CPU time (``/proc/<pid>/stat``, found from the port it listens on). The server is
the one ``MONGODB_URI`` names, else the embedded one on ``ZC_MONGODB_PORT`` (27017); the
database it creates is dropped at the end. The last line is JSON.

    .venv/bin/python bench/ferretdb_sweep.py [--documents 100000] [--pending 5] [--sweeps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pymongo import ASCENDING, AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from localsuite.ports import port_owner

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DATABASE = "bench_ferretdb_sweep"
QUERIES: dict[str, dict[str, Any]] = {
    "outbox sweep {_outbox_pending: true}": {"_outbox_pending": True},
    'state poll {state: "EXECUTING"}': {"state": "EXECUTING"},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def fill(client: AsyncMongoClient[dict[str, Any]], documents: int, pending: int) -> None:
    docs = client[DATABASE]["aggregates"]
    await docs.drop()
    await docs.create_index([("_outbox_pending", ASCENDING)], name="outbox_pending")
    await docs.create_index([("state", ASCENDING)], name="state")
    every = max(documents // max(pending, 1), 1)
    batch: list[dict[str, Any]] = []
    for n in range(documents):
        live = pending > 0 and n % every == 0 and n // every < pending
        batch.append(
            {
                "_id": f"agg-{n:08d}",
                "state": "EXECUTING" if live else "DONE",
                "amount_minor": 10_000 + n,
                "version": 3,
                "_outbox": {"v00000003-0": {"type": "Done"}} if live else {},
                "_outbox_pending": live,
            }
        )
        if len(batch) == 1000:
            await docs.insert_many(batch)
            batch = []
    if batch:
        await docs.insert_many(batch)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=20)
    args = parser.parse_args()

    uri = os.environ.get("MONGODB_URI") or (
        f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', '27017')}/"
    )
    pid = port_owner(urlparse(uri).port or 27017)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        started = time.perf_counter()
        await fill(client, args.documents, args.pending)
        print(f"filled {args.documents} documents in {time.perf_counter() - started:.1f} s")
        docs = client[DATABASE]["aggregates"]
        results: dict[str, dict[str, float]] = {}
        for label, query in QUERIES.items():
            walls, cpus = [], []
            for _ in range(args.sweeps):
                cpu0 = cpu_seconds(pid) if pid else 0.0
                wall0 = time.perf_counter()
                found = [doc async for doc in docs.find(query, {"_outbox": 1})]
                walls.append(time.perf_counter() - wall0)
                cpus.append((cpu_seconds(pid) if pid else 0.0) - cpu0)
                if len(found) != args.pending:
                    raise SystemExit(f"{label}: {len(found)} documents, expected {args.pending}")
            walls.sort()
            row = {
                "wall_ms_median": 1000 * walls[len(walls) // 2],
                "server_cpu_ms_per_sweep": 1000 * sum(cpus) / len(cpus) if pid else -1.0,
            }
            results[label] = row
            print(
                f"{label}: {row['wall_ms_median']:.1f} ms (median of {args.sweeps}), "
                + (
                    f"server CPU {row['server_cpu_ms_per_sweep']:.1f} ms per sweep"
                    if pid
                    else "server CPU not measured (its process is not on this machine)"
                )
            )
        print(json.dumps({"documents": args.documents, "pending": args.pending, **results}))
    finally:
        await client.drop_database(DATABASE)
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
