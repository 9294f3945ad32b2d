"""Identity trust services: face verifications/s, Merkle-log appends/s, proofs at 1,000,000
leaves, on the real MongoDB-wire engine (FerretDB here).

1. Face verification: decode + HOG detect + 5-point landmarks + ResNet embedding + distance of
   a JPEG probe (the astronaut photo, 512x512) against a template, ``--faces`` times, on one
   thread and on the service's two-thread pool.
2. Log appends through :class:`MerkleLog` in its own database: one at a time (each durable
   before the next), then ``--concurrency`` callers at once (group commit), then bulk batches
   of ``--batch`` leaves until the log holds ``--leaves`` leaves.
3. The sequenced path of the service (``sequencer.py``): two sequencers on one database (two
   replicas in one process; one holds the lease), ``--signings`` leaves queued by
   ``--concurrency`` callers through alternating replicas, each waiting for its index as a
   signing request does; then the cost of one scan of the queue and of one ``_id`` read in it
   with 0..5,000 leaves in flight.
4. At that size: inclusion and consistency proofs for random indexes/sizes from a freshly
   loaded log (cold: tiles read from the database) and again (warm: full tiles cached), each
   verified against the root.

The database is dropped afterwards. The last stdout line is JSON.

    .venv/bin/python bench/identity_trust.py [--leaves 1000000] [--faces 40] [--signings 400]
        [--skip-faces] [--skip-log]
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import AsyncMongoClient

from tests.fixtures import faces
from zerocontact.identity.trust import face, merkle
from zerocontact.identity.trust.log import MerkleLog
from zerocontact.identity.trust.sequencer import LeafQueue, Sequencer


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


async def bench_queue(uri: str, signings: int, concurrency: int) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    name = f"bench_trust_q_{uuid.uuid4().hex[:10]}"
    db = client[name]
    out: dict[str, Any] = {}
    key = Ed25519PrivateKey.generate()
    replicas: list[Sequencer] = []
    heads = 0

    def make(holder: str) -> Sequencer:
        log = MerkleLog(db)

        async def publish() -> None:
            nonlocal heads
            heads += await log.store_head(log.sign_head(key), [])

        async def complete(doc: dict[str, Any]) -> None:
            await queue.remove(doc["_id"])

        return Sequencer(
            log, LeafQueue(db), holder=holder, lease_s=5.0, poll_s=0.05, batch_max=1000,
            sweep_after_s=15.0, publish_head=publish, complete=complete,
        )  # fmt: skip

    queue = LeafQueue(db)
    try:
        replicas = [make("r0"), make("r1")]
        for r in replicas:
            await r.start()
        for _ in range(1000):  # one of them claims the lease at its first step
            if any(r.leader for r in replicas):
                break
            await asyncio.sleep(0.01)
        latencies: list[float] = []
        pending = list(range(signings))

        async def caller() -> None:
            while pending:
                n = pending.pop()
                replica = replicas[n % 2]
                start = time.perf_counter()
                qid = f"contract-{n:08d}"
                await queue.enqueue(
                    {"_id": qid, "leaf": qid.encode(), "queued_at": datetime.now(UTC)}
                )
                replica.wake()
                doc = await replica.wait(qid, within_s=30.0)
                assert doc is not None and doc.get("index") is not None
                await queue.remove(qid)  # as the signing request does once it has the receipt
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        leader = next(r for r in replicas if r.leader)
        assert leader.log.size == signings
        out["sequenced_signings_per_s"] = round(signings / elapsed, 1)
        out["sequenced_latency"] = _ms(latencies)
        out["sequenced_batches"] = heads - 1  # the empty head at takeover is not a batch
        for r in replicas:
            await r.stop()
        scans: dict[str, Any] = {}
        filler = db["bench_queue_scan"]
        probe = LeafQueue(db)
        probe.coll = filler
        held = 0
        for target in (0, 100, 1000, 5000):
            docs = [
                {"_id": f"q-{i:08d}", "leaf": b"x" * 400, "queued_at": datetime.now(UTC)}
                for i in range(held, target)
            ]
            if docs:
                await filler.insert_many(docs)
            held = target
            times, reads = [], []
            for _ in range(20):
                t = time.perf_counter()
                await probe.scan()
                times.append(time.perf_counter() - t)
                t = time.perf_counter()
                await probe.get(f"q-{max(target - 1, 0):08d}")
                reads.append(time.perf_counter() - t)
            scans[str(target)] = {"scan": _ms(times), "get_last_by_id": _ms(reads)}
        out["queue_scan_by_leaves_in_flight"] = scans
    finally:
        for r in replicas:
            await r.stop()
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
    parser.add_argument("--signings", type=int, default=400)
    parser.add_argument("--skip-faces", action="store_true")
    parser.add_argument("--skip-log", action="store_true")
    args = parser.parse_args()
    uri = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
    result: dict[str, Any] = {}
    if not args.skip_faces:
        result["faces"] = bench_faces(args.faces)
        print(json.dumps(result["faces"]), flush=True)
    result["queue"] = asyncio.run(bench_queue(uri, args.signings, args.concurrency))
    print(json.dumps(result["queue"]), flush=True)
    if not args.skip_log:
        result["log"] = asyncio.run(bench_log(uri, args.leaves, args.batch, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
