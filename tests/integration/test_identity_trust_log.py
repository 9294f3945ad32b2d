"""The Merkle log on the real MongoDB-wire engine: tiles, sequencing, reload, proofs."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo.asynchronous.database import AsyncDatabase

from tests.unit.test_trust_merkle import naive_mth
from zerocontact.identity.trust import merkle
from zerocontact.identity.trust.log import TILE_WIDTH, ConcurrentWriter, MerkleLog
from zerocontact.identity.trust.sequencer import LeafQueue, Sequencer, pending_order


async def test_appends_reload_and_proofs_agree_with_the_naive_tree(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    leaves = [f"entry-{i}".encode() for i in range(3 * TILE_WIDTH + 77)]
    log = MerkleLog(mongo_db)
    await log.load()
    assert log.root() == merkle.EMPTY_ROOT
    assert await log.append_batch(leaves[:300]) == 0
    for leaf in leaves[300:320]:  # one at a time
        await log.append(leaf)
    indexes = await asyncio.gather(*(log.append(leaf) for leaf in leaves[320:]))
    assert sorted(indexes) == list(range(320, len(leaves)))  # dense, no gaps or repeats
    # The log holds the callers' leaves at the indexes they were told.
    ordered = leaves[:320] + [b""] * (len(leaves) - 320)
    for leaf, index in zip(leaves[320:], indexes, strict=True):
        ordered[index] = leaf
    assert log.root() == naive_mth(ordered)

    reloaded = MerkleLog(mongo_db)  # a restarted process
    await reloaded.load()
    assert (reloaded.size, reloaded.root()) == (log.size, log.root())
    rng = random.Random(3)
    for size in (1, 2, 255, 256, 257, 300, 511, 512, len(ordered)):
        root = naive_mth(ordered[:size])
        assert await reloaded.root_at(size) == root
        for index in {0, size - 1, rng.randrange(size)}:
            proof = await reloaded.inclusion(index, size)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(ordered[index]), proof, root)
        first = rng.randrange(1, size + 1)
        proof = await reloaded.consistency(first, size)
        merkle.verify_consistency(first, size, naive_mth(ordered[:first]), root, proof)
    with pytest.raises(ValueError):
        await reloaded.inclusion(0, len(ordered) + 1)


async def test_the_instance_that_loaded_last_writes_and_a_stale_one_cannot_fork(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    old = MerkleLog(mongo_db)
    await old.load()
    await old.append_batch([b"a", b"b"])
    new = MerkleLog(mongo_db)  # e.g. the next pod of a rollout
    await new.load()
    assert await new.append(b"c") == 2
    with pytest.raises(ConcurrentWriter):
        await old.append(b"x")
    assert old.size == 3  # refreshed: it reads the current log, but stays fenced out
    with pytest.raises(ConcurrentWriter):
        await old.append(b"y")
    assert await new.append_batch([b"d"] * 300) == 3  # its tiles were not clobbered
    await old.load()  # loading again takes the log over
    assert await old.append(b"e") == 303
    expected = [b"a", b"b", b"c", *([b"d"] * 300), b"e"]
    assert old.root() == naive_mth(expected)
    fresh = MerkleLog(mongo_db)
    await fresh.load(write=False)
    assert fresh.root() == naive_mth(expected)
    merkle.verify_inclusion(
        2, 304, merkle.leaf_hash(b"c"), await fresh.inclusion(2, 304), naive_mth(expected)
    )
    # A state written before leases existed (no lease fields) is claimed by the sequencer.
    seq = _sequencer(mongo_db, "upgrade", Ed25519PrivateKey.generate())
    await seq.step()
    assert seq.leader and seq.log.size == 304 and seq.log.root() == naive_mth(expected)
    with pytest.raises(ConcurrentWriter):
        await old.append(b"z")  # the claim fenced the instance that loaded last


async def test_tree_heads_are_kept_once_per_size(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    key = Ed25519PrivateKey.generate()
    log = MerkleLog(mongo_db)
    await log.load()
    await log.append_batch([b"x", b"y", b"z"])
    head = log.sign_head(key)
    head.verify(key.public_key())
    assert await log.store_head(head, [])
    assert not await log.store_head(log.sign_head(key), [])  # same size: the first one stays
    assert await log.head_at(3) == head
    assert await log.latest_head() == head


def _sequencer(
    db: AsyncDatabase[dict[str, Any]], holder: str, key: Ed25519PrivateKey, *,
    completed: list[str] | None = None, lease_s: float = 1.0,
) -> Sequencer:  # fmt: skip
    log = MerkleLog(db)

    async def publish() -> None:
        await log.store_head(log.sign_head(key), [])

    async def complete(doc: dict[str, Any]) -> None:
        (completed if completed is not None else []).append(doc["_id"])

    return Sequencer(
        log, LeafQueue(db), holder=holder, lease_s=lease_s, poll_s=0.02, batch_max=100,
        sweep_after_s=0.0, publish_head=publish, complete=complete,
    )  # fmt: skip


async def _enqueue(queue: LeafQueue, *names: str) -> None:
    for name in names:
        doc = {"_id": name, "leaf": name.encode(), "queued_at": datetime.now(UTC)}
        assert await queue.enqueue(doc)
        assert not await queue.enqueue(doc)  # one leaf per id, however often it is sent


async def test_a_holder_killed_after_committing_a_batch_loses_no_leaf_and_makes_no_duplicate(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    key = Ed25519PrivateKey.generate()
    a, b = _sequencer(mongo_db, "a", key), _sequencer(mongo_db, "b", key)
    queue = a.queue
    await a.step()
    assert a.leader
    await b.step()
    assert not b.leader  # the lease is held
    await _enqueue(queue, "c1", "c2", "c3")
    await a.step()
    assert [(await queue.get(c) or {}).get("index") for c in ("c1", "c2", "c3")] == [0, 1, 2]
    # A is killed between its state move and its marks: the batch is in the log, unmarked.
    await _enqueue(queue, "c4", "c5")
    pending = pending_order(await queue.scan())
    await a.log.append_batch([bytes(d["leaf"]) for d in pending], ids=[d["_id"] for d in pending])
    assert (await queue.get("c4") or {}).get("index") is None
    await asyncio.sleep(1.1)  # the lease lapses (no release: the process died)
    await _enqueue(queue, "c6")
    await b.step()
    assert b.leader
    marks = {c: (await queue.get(c) or {}).get("index") for c in ("c4", "c5", "c6")}
    assert marks == {"c4": 3, "c5": 4, "c6": 5}  # c4, c5 marked from last_batch, not re-added
    assert b.log.size == 6
    expected = [b"c1", b"c2", b"c3", b"c4", b"c5", b"c6"]
    assert b.log.root() == naive_mth(expected)
    head = await b.log.latest_head()
    assert head is not None and head.tree_size == 6 and head.root_hash == naive_mth(expected)
    # The zombie wakes up: its renewal fails, it steps down and never writes again.
    await _enqueue(queue, "c7")
    a._renew_at = 0
    await a.step()
    assert not a.leader
    with pytest.raises(ConcurrentWriter):
        await a.log.append_batch([b"fork"])
    await b.step()
    assert (await queue.get("c7") or {}).get("index") == 6
    assert b.log.root() == naive_mth([*expected, b"c7"])


async def test_a_stopping_holder_releases_the_lease_and_the_next_claims_it_at_once(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    key = Ed25519PrivateKey.generate()
    a, b = _sequencer(mongo_db, "a", key, lease_s=30.0), _sequencer(mongo_db, "b", key)
    await a.step()
    await b.step()
    assert a.leader and not b.leader
    await a.stop()  # a rolling restart: the lease is given back
    await b.step()
    assert b.leader  # without waiting 30 s
    await _enqueue(b.queue, "x")
    waiter = asyncio.create_task(b.wait("x", within_s=5.0))
    await b.step()
    doc = await waiter
    assert doc is not None and doc["index"] == 0 and doc["tree_size"] == 1
    assert await b.wait("missing", within_s=0.05) is None
    await _enqueue(b.queue, "y")
    pending = await b.wait("y", within_s=0.05)  # nobody sequences: the deadline passes
    assert pending is not None and pending.get("index") is None


async def test_the_sweep_completes_integrated_leaves_nobody_waits_for(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    completed: list[str] = []
    seq = _sequencer(mongo_db, "s", Ed25519PrivateKey.generate(), completed=completed)
    await _enqueue(seq.queue, "p", "q")
    await seq.step()  # claims and integrates (the sweep saw them pending)
    assert completed == []
    await asyncio.sleep(1.05)  # the sweep runs once a second
    await seq.step()  # sweep_after_s=0: nobody waits, both are completed
    assert sorted(set(completed)) == ["p", "q"]


async def test_a_batch_whose_head_or_marks_failed_is_marked_not_integrated_again(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    key = Ed25519PrivateKey.generate()
    seq = _sequencer(mongo_db, "s", key)
    failures = [RuntimeError("engine hiccup")]
    publish = seq._publish_head

    async def flaky() -> object:
        if seq.log.size and failures:
            raise failures.pop()
        return await publish()

    seq._publish_head = flaky
    await seq.step()  # claims (publishes the empty head)
    await _enqueue(seq.queue, "m1", "m2")
    with pytest.raises(RuntimeError):
        await seq.step()  # committed to the log, then the head failed: no marks
    assert (await seq.queue.get("m1") or {}).get("index") is None
    await seq.step()
    assert [(await seq.queue.get(m) or {}).get("index") for m in ("m1", "m2")] == [0, 1]
    assert seq.log.size == 2  # not integrated twice
    assert seq.log.root() == naive_mth([b"m1", b"m2"])
