"""The Merkle log on the real MongoDB-wire engine: tiles, sequencing, reload, proofs."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo.asynchronous.database import AsyncDatabase

from tests.unit.test_trust_merkle import naive_mth
from zerocontact.identity.trust import merkle
from zerocontact.identity.trust.log import TILE_WIDTH, ConcurrentWriter, MerkleLog


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
