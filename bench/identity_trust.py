"""Identity trust services: face verifications/s, Merkle-log appends/s, proofs at 1,000,000
leaves, on the real MongoDB-wire engine (FerretDB here).

1. Face verification: decode + HOG detect + 5-point landmarks + ResNet embedding + distance of
   a JPEG probe (the astronaut photo, 512x512) against a template, ``--faces`` times, on one
   thread and on the service's two-thread pool.
2. Log appends through :class:`MerkleLog` in its own database: one at a time (each durable
   before the next), then ``--concurrency`` callers at once (group commit), then bulk batches
   of ``--batch`` leaves until the log holds ``--leaves`` leaves.
3. At that size: inclusion and consistency proofs for random indexes/sizes from a freshly
   loaded log (cold: tiles read from the database) and again (warm: full tiles cached), each
   verified against the root.

The database is dropped afterwards. The last stdout line is JSON.

    .venv/bin/python bench/identity_trust.py [--leaves 1000000] [--faces 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pymongo import AsyncMongoClient

from tests.fixtures import faces
from zerocontact.identity.trust import face, merkle
from zerocontact.identity.trust.log import MerkleLog


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def bench_faces(n: int) -> dict[str, Any]:
    template = face.embed_photo(faces.jpeg(faces.astronaut()))
    probe = faces.jpeg(faces.variants(faces.astronaut())["rotated_5"])

    def verify(_: int) -> float:
        return face.distance(face.embed_photo(probe), template)

    verify(0)  # models loaded
    start = time.perf_counter()
    distances = [verify(i) for i in range(n)]
    one = n / (time.perf_counter() - start)
    with ThreadPoolExecutor(2) as pool:
        start = time.perf_counter()
        list(pool.map(verify, range(n)))
        two = n / (time.perf_counter() - start)
    return {
        "verifications_per_s_1_thread": round(one, 2),
        "verifications_per_s_2_threads": round(two, 2),
        "distance": round(distances[0], 4),
    }


async def bench_log(uri: str, leaves: int, batch: int, concurrency: int) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    name = f"bench_trust_{uuid.uuid4().hex[:10]}"
    db = client[name]
    out: dict[str, Any] = {}
    try:
        log = MerkleLog(db)
        await log.load()
        n = 300
        start = time.perf_counter()
        for i in range(n):
            await log.append(f"single-{i}".encode())
        out["appends_per_s_sequential"] = round(n / (time.perf_counter() - start), 1)

        rounds = 10
        start = time.perf_counter()
        for r in range(rounds):
            await asyncio.gather(*(log.append(f"c-{r}-{i}".encode()) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
        out[f"appends_per_s_{concurrency}_concurrent"] = round(rounds * concurrency / elapsed, 1)

        start = time.perf_counter()
        while log.size < leaves:
            size = min(batch, leaves - log.size)
            await log.append_batch([f"leaf-{log.size + i}".encode() for i in range(size)])
        elapsed = time.perf_counter() - start
        out["bulk_leaves"] = log.size
        out["appends_per_s_bulk"] = round((log.size - n - rounds * concurrency) / elapsed, 1)
        out["tile_documents"] = await db["trust_log_tiles"].estimated_document_count()
        root = log.root()

        rng = random.Random(7)
        reader = MerkleLog(db)  # a fresh process's view: no tile cached
        start = time.perf_counter()
        await reader.load()
        out["load_s"] = round(time.perf_counter() - start, 3)
        assert reader.root() == root
        for label in ("cold", "warm"):
            inc, con = [], []
            for _ in range(50):
                index = rng.randrange(log.size)
                start = time.perf_counter()
                path = await reader.inclusion(index, log.size)
                inc.append(time.perf_counter() - start)
                leaf = _leaf(index, n, rounds, concurrency)
                merkle.verify_inclusion(index, log.size, merkle.leaf_hash(leaf), path, root)
                first = rng.randrange(1, log.size)
                start = time.perf_counter()
                proof = await reader.consistency(first, log.size)
                first_root = await reader.root_at(first)
                con.append(time.perf_counter() - start)
                merkle.verify_consistency(first, log.size, first_root, root, proof)
            out[f"inclusion_{label}"] = _ms(inc) | {"path_len": len(path)}
            out[f"consistency_{label}"] = _ms(con)
    finally:
        await client.drop_database(name)
        await client.close()
    return out


def _leaf(index: int, singles: int, rounds: int, concurrency: int) -> bytes:
    if index < singles:
        return f"single-{index}".encode()
    if index < singles + rounds * concurrency:
        # within one gather the order is the callers' queue order, which is creation order
        k = index - singles
        return f"c-{k // concurrency}-{k % concurrency}".encode()
    return f"leaf-{index}".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--faces", type=int, default=40)
    args = parser.parse_args()
    uri = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
    result: dict[str, Any] = {"faces": bench_faces(args.faces)}
    print(json.dumps(result["faces"]), flush=True)
    result["log"] = asyncio.run(bench_log(uri, args.leaves, args.batch, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
