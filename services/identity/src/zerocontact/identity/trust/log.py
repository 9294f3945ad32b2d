"""The append-only Merkle log in MongoDB, stored as tiles of 256 hashes keyed by ``_id``.

Why tiles: FerretDB 1.24 on SQLite finds even ``{_id: <value>}`` by scanning rows in insertion
order (measured here: ~1.4 µs per row, 58 ms for the last of 40,000 documents; ``$in`` reads
the whole collection), so one document per tree node (2 million at a million leaves) would
make every read cost seconds. Like the tiles of Go's transparency logs (``tlog``), a tile
``(t, k)`` holds the hashes of the level-``8t`` nodes ``256k .. 256k+255`` concatenated in one
``bytes`` field; a node at level ``8t + r`` is folded from ``2**r`` (at most 128) of them.
A million leaves are 3,923 tile documents; a proof reads O(log n) nodes from at most a few
tiles, and a full tile never changes again, so full tiles are cached in memory.

Appends are sequenced by one writer at a time, fenced by an *epoch* in the state document:
every tile write and state update carries it (tiles accept only writers of their epoch or a
later one; the state moves from the old size to the new only under the current epoch). In the
service the writer is the holder of a renewable lease kept in the same state document
(:meth:`MerkleLog.claim`, :meth:`MerkleLog.renew`, :meth:`MerkleLog.release`; see
``sequencer.py``); claiming bumps the epoch, so a holder that lost its lease (paused, cut off)
fails with :class:`ConcurrentWriter` instead of forking the log, and cannot clobber tiles the
new holder has written. :meth:`MerkleLog.load` takes the log over unconditionally (tools,
benchmarks). Each state move records the batch's queue ids (``last_batch``), so a new writer
can finish marking a batch whose writer died after committing it. Tiles are written before
the state; readers never look past the state's size, so a crash in between only leaves hashes
past the size that the next append overwrites. Instances that do not write see the log grow
through :meth:`MerkleLog.refresh`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.identity.trust import merkle
from zerocontact.identity.trust.merkle import HASH_SIZE, NodeId
from zerocontact.identity.trust.treehead import TreeHead
from zerocontact.platform.errors import Unavailable
from zerocontact.platform.outbox import OutboxEvent, outbox_document

TILES = "trust_log_tiles"
STATE = "trust_log_state"
HEADS = "trust_tree_heads"
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
CACHED_TILES = 4_096
Document = dict[str, Any]
TileId = tuple[int, int]


def _tid(tile: TileId) -> str:
    return f"{tile[0]}:{tile[1]}"


def _tile_span(node: NodeId) -> tuple[TileId, int, int]:
    """The tile holding ``node``'s descendants at the tile's level, and their slice."""
    t, r = divmod(node.level, TILE_HEIGHT)
    first = node.index << r
    k, offset = divmod(first, TILE_WIDTH)
    return (t, k), offset, 1 << r


class ConcurrentWriter(Unavailable):
    """Another instance took the log over; this one is fenced out until it loads again."""

    code = "log_writer_moved"


class MerkleLog:
    """One log: append leaves, read roots and proofs, sign and keep tree heads."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        """Collections of ``db``; call :meth:`load` before use."""
        self.tiles = db[TILES]
        self.state = db[STATE]
        self.heads = db[HEADS]
        self.size = 0
        self.epoch = 0
        self._stack: list[tuple[NodeId, bytes]] = []  # the compact range of ``size`` leaves
        self._edge: dict[int, bytearray] = {}  # per tile level, the tile being filled
        self._full: OrderedDict[TileId, bytes] = OrderedDict()
        self._lock = asyncio.Lock()
        self._queue: list[tuple[bytes, asyncio.Future[int]]] = []
        self._refreshing = asyncio.Lock()

    async def load(self, *, write: bool = True) -> None:
        """Read the log (:meth:`refresh`); with ``write``, take it over unconditionally (a new
        epoch fences every earlier writer out, whatever its lease)."""
        while write:
            state = await self.state.find_one({"_id": "log"})
            epoch = int(state.get("epoch", 0)) if state else 0
            try:
                taken = await self.state.update_one(
                    {"_id": "log", "epoch": epoch},
                    {"$set": {"epoch": epoch + 1}, "$setOnInsert": {"size": 0}},
                    upsert=state is None,
                )
            except DuplicateKeyError:  # created meanwhile by another instance
                continue
            if taken.modified_count == 1 or taken.upserted_id is not None:
                self.epoch = epoch + 1
                break
        await self.refresh(force=True)

    async def claim(self, holder: str, *, now_ms: int, lease_ms: int) -> bool:
        """Take the writer's lease if it is free or lapsed (compare-and-set on the epoch and
        the lease seen, so two claimants cannot both win and a renewal is never stolen)."""
        state = await self.state.find_one({"_id": "log"})
        held = state is not None and int(state.get("lease_until") or 0) > now_ms
        if held and state is not None and state.get("holder") != holder:
            return False
        epoch = int(state.get("epoch", 0)) if state else 0
        seen: Document = {}
        if state is not None:  # a state written by load() has no lease yet
            has = "lease_until" in state
            seen = {"lease_until": state["lease_until"] if has else {"$exists": False}}
        update = {"$set": {"epoch": epoch + 1, "holder": holder, "lease_until": now_ms + lease_ms}}
        try:
            if state is None:
                await self.state.insert_one({"_id": "log", "size": 0, **update["$set"]})
            else:
                taken = await self.state.update_one({"_id": "log", "epoch": epoch, **seen}, update)
                if taken.modified_count != 1:
                    return False
        except DuplicateKeyError:  # another claimant created the state first
            return False
        self.epoch = epoch + 1
        await self.refresh(force=True)
        return True

    async def renew(self, *, now_ms: int, lease_ms: int) -> bool:
        """Extend the lease this instance holds; False if another instance took the log."""
        renewed = await self.state.update_one(
            {"_id": "log", "epoch": self.epoch}, {"$set": {"lease_until": now_ms + lease_ms}}
        )
        return renewed.modified_count == 1 or renewed.matched_count == 1

    async def release(self) -> None:
        """Give the lease up (a stopping holder), so another instance claims it at once."""
        await self.state.update_one(
            {"_id": "log", "epoch": self.epoch}, {"$set": {"lease_until": 0, "holder": None}}
        )

    async def refresh(self, *, force: bool = False) -> bool:
        """Catch up with the recorded size (an instance that does not write, or one that was
        fenced out); True if the size changed. The new view is swapped in at once, so a
        concurrent reader sees either the old size and edge or the new ones, never a mix."""
        async with self._refreshing:
            state = await self.state.find_one({"_id": "log"})
            size = int(state.get("size", 0)) if state else 0
            if size == self.size and not force:
                return False
            edge: dict[int, bytearray] = {}
            t = 0
            while (count := size >> (TILE_HEIGHT * t)) > 0:
                k, used = divmod(count, TILE_WIDTH)
                doc = await self.tiles.find_one({"_id": _tid((t, k))}) if used else None
                edge[t] = bytearray(bytes(doc["h"])[: used * HASH_SIZE] if doc else b"")
                t += 1
            plan = merkle.compact_range(size)
            nodes = await self._read(plan, size=size, edge=edge)
            self.size, self._edge = size, edge
            self._stack = [(n, nodes[n]) for n in plan]
            return True

    async def last_batch(self) -> tuple[int, list[str]]:
        """The first index and queue ids of the last committed batch."""
        state = await self.state.find_one({"_id": "log"}) or {}
        batch = state.get("last_batch") or {}
        return int(batch.get("first", 0)), [str(i) for i in batch.get("ids", [])]

    def root(self) -> bytes:
        """The current root (folded from the compact range)."""
        return _fold(self._stack)

    async def append(self, leaf: bytes) -> int:
        """Append one leaf; return its index once it is integrated and durable."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((leaf, future))
        async with self._lock:
            if not future.done():
                batch, self._queue = self._queue, []
                try:
                    first = await self._integrate([b for b, _ in batch])
                except BaseException as exc:
                    for _, f in batch:
                        f.set_exception(exc)
                else:
                    for n, (_, f) in enumerate(batch):
                        f.set_result(first + n)
        return await future

    async def append_batch(self, leaves: Sequence[bytes], ids: Sequence[str] = ()) -> int:
        """Append many leaves in order; return the first index. ``ids`` (the queue ids of the
        leaves) are recorded with the state move as the last batch."""
        async with self._lock:
            return await self._integrate(list(leaves), list(ids))

    async def _integrate(self, leaves: list[bytes], ids: list[str] | None = None) -> int:
        first = self.size
        stack = list(self._stack)
        edge = {t: bytearray(b) for t, b in self._edge.items()}
        touched: dict[TileId, bytes] = {}

        def record(node: NodeId, h: bytes) -> None:
            t = node.level // TILE_HEIGHT
            tile = edge.setdefault(t, bytearray())
            tile += h
            k = node.index // TILE_WIDTH
            touched[(t, k)] = bytes(tile)
            if len(tile) == TILE_WIDTH * HASH_SIZE:
                edge[t] = bytearray()

        for n, leaf in enumerate(leaves):
            node, h = NodeId(0, first + n), merkle.leaf_hash(leaf)
            record(node, h)
            while stack and stack[-1][0].level == node.level:
                left = stack.pop()[1]
                node, h = NodeId(node.level + 1, node.index // 2), merkle.node_hash(left, h)
                if node.level % TILE_HEIGHT == 0:
                    record(node, h)
            stack.append((node, h))
        written = await asyncio.gather(
            *(self._write_tile(tile, hashes) for tile, hashes in touched.items())
        )
        new_size = first + len(leaves)
        moved = await self.state.update_one(
            {"_id": "log", "size": first, "epoch": self.epoch},
            {"$set": {"size": new_size, "root": _fold(stack),
                      "last_batch": {"first": first, "ids": ids or []}}},
        )  # fmt: skip
        if not all(written) or moved.modified_count != 1:
            await self.refresh(force=True)  # see the current writer's log; stay fenced out
            raise ConcurrentWriter("another instance writes the log now", retry=True)
        self.size, self._stack, self._edge = new_size, stack, edge
        return first

    async def _write_tile(self, tile: TileId, hashes: bytes) -> bool:
        """Write a tile unless a later epoch wrote it (False: fenced out)."""
        try:
            await self.tiles.update_one(
                {"_id": _tid(tile), "epoch": {"$lte": self.epoch}},
                {"$set": {"h": hashes, "epoch": self.epoch}},
                upsert=True,
            )
        except DuplicateKeyError:  # the tile exists with a later epoch: the upsert collided
            return False
        return True

    async def _tile(self, tile: TileId, size: int, edge: dict[int, bytearray]) -> bytes:
        if tile in self._full:
            self._full.move_to_end(tile)
            return self._full[tile]
        t, k = tile
        if k == (size >> (TILE_HEIGHT * t)) // TILE_WIDTH and t in edge:
            return bytes(edge[t])  # the right edge: in memory, as written
        doc = await self.tiles.find_one({"_id": _tid(tile)})
        if doc is None:
            raise LookupError(f"log tile {tile} missing")
        hashes = bytes(doc["h"])
        if len(hashes) == TILE_WIDTH * HASH_SIZE:
            self._full[tile] = hashes
            if len(self._full) > CACHED_TILES:
                self._full.popitem(last=False)
        return hashes

    async def _read(
        self, nodes: Sequence[NodeId], *, size: int | None = None,
        edge: dict[int, bytearray] | None = None,
    ) -> dict[NodeId, bytes]:  # fmt: skip
        # One consistent view (size and edge taken together) for the whole read.
        if size is None or edge is None:
            size, edge = self.size, self._edge
        spans = {n: _tile_span(n) for n in nodes}
        wanted = sorted({tile for tile, _, _ in spans.values()})
        got = await asyncio.gather(*(self._tile(w, size, edge) for w in wanted))
        tiles = dict(zip(wanted, got, strict=True))
        found = {}
        for node, (tile, offset, count) in spans.items():
            raw = tiles[tile][offset * HASH_SIZE : (offset + count) * HASH_SIZE]
            if len(raw) != count * HASH_SIZE:
                raise LookupError(f"log node {node} is beyond the stored tiles")
            level = [raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)]
            while len(level) > 1:
                level = [
                    merkle.node_hash(a, b) for a, b in zip(level[::2], level[1::2], strict=True)
                ]
            found[node] = level[0]
        return found

    async def root_at(self, size: int) -> bytes:
        """The root of the first ``size`` leaves."""
        self._check_size(size)
        plan = merkle.compact_range(size)
        return merkle.root_hash(size, merkle.from_mapping(await self._read(plan)))

    async def inclusion(self, index: int, size: int) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of ``size`` leaves."""
        self._check_size(size)
        nodes = await self._read(merkle.inclusion_plan(index, size))
        return merkle.inclusion_proof(index, size, merkle.from_mapping(nodes))

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """Consistency proof between the trees of ``first`` and ``second`` leaves."""
        self._check_size(second)
        nodes = await self._read(merkle.consistency_plan(first, second))
        return merkle.consistency_proof(first, second, merkle.from_mapping(nodes))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is beyond the log's {self.size}")

    def sign_head(self, key: Ed25519PrivateKey) -> TreeHead:
        """A signed tree head of the current size."""
        return TreeHead.sign(
            key, tree_size=self.size, timestamp_ms=int(time.time() * 1000), root_hash=self.root()
        )

    async def store_head(self, head: TreeHead, events: Sequence[OutboxEvent]) -> bool:
        """Keep the first head signed at each size, with its event; False if one exists."""
        doc = {"_id": f"{head.tree_size:016d}", **head.to_json()}
        doc.update(outbox_document(events, version=1))
        try:
            await self.heads.insert_one(doc)
        except DuplicateKeyError:
            return False
        # The latest head only moves forward (a slow, fenced-out writer cannot rewind it); the
        # upsert collides with a larger latest head, which stays.
        with contextlib.suppress(DuplicateKeyError):
            await self.state.update_one(
                {"_id": "head", "tree_size": {"$lt": head.tree_size}},
                {"$set": head.to_json()},
                upsert=True,
            )
        return True

    async def head_at(self, size: int) -> TreeHead | None:
        """The published head of ``size`` leaves, if any."""
        doc = await self.heads.find_one({"_id": f"{size:016d}"})
        return None if doc is None else TreeHead.from_json(doc)

    async def latest_head(self) -> TreeHead | None:
        """The most recently published head."""
        doc = await self.state.find_one({"_id": "head"})
        return None if doc is None else TreeHead.from_json(doc)


def _fold(stack: Sequence[tuple[NodeId, bytes]]) -> bytes:
    if not stack:
        return merkle.EMPTY_ROOT
    r = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        r = merkle.node_hash(h, r)
    return r
