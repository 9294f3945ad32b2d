"""A per-partner rate limit shared by every gateway instance: fixed windows counted in MongoDB.

Each partner has one counter document per window (``_id`` = ``<partner>:<window number>``,
window = ``window_s``, 1 s): an instance admits a call after one atomic
``find_one_and_update({_id}, {$inc: {n: chunk}}, upsert)`` says the window's count is still
within the partner's limit (``rate_per_s * window_s``). All instances count into the same
document, so a partner gets its rate once, however many replicas serve it.

Keeping the per-call cost low:

* **Refusals are local.** Once an instance has seen a window full, it refuses that partner
  without a database call until the window ends (a flood costs one write per instance per
  window, not one per call).
* **One claim in flight per partner and instance.** Calls that arrive while a claim is being
  written queue behind it and are claimed for together by the next write (``$inc`` by how
  many wait): a burst costs a few writes, not one per call, and stays exact.
* **Admissions may be claimed in chunks.** A partner whose limit per window is ≥ 100 claims
  at least ``limit // 50`` slots (at most 20) per write and spends them locally. Slots an
  instance claimed but did not use by the window's end are lost, so the admitted total may
  fall short of the limit by up to ``chunk - 1`` per instance per window (≤ 2 %), never exceed
  it. Below 100 per window nothing is claimed ahead: exact.

A fixed window admits at most the limit per window; across a window boundary a partner may
get up to twice its rate within one second (the average over any two windows holds).

Old windows are deleted by :meth:`SharedRateLimiter.purge` from a periodic job (FerretDB has
no TTL indexes; on MongoDB a TTL index on ``expires_at`` would do the same). When MongoDB does
not answer within ``timeout_s``, :meth:`admit` raises and the gateway falls back to its
per-instance limiter for that call.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

COLLECTION = "rate_windows"


@dataclass
class _Window:
    """What this instance knows of a partner's current window."""

    number: int
    tokens: int = 0  # slots claimed and not yet spent
    full: bool = False  # the shared count reached the limit: refuse locally
    queued: int = 0  # calls waiting for a claim
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SharedRateLimiter:
    """Fixed-window counters per partner in one MongoDB collection (see the module doc)."""

    def __init__(
        self,
        windows: AsyncCollection[dict[str, Any]],
        *,
        window_s: float = 1.0,
        timeout_s: float = 0.5,
        max_chunk: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.windows = windows
        self.window_s = window_s
        self.timeout_s = timeout_s
        self.max_chunk = max_chunk
        self.clock = clock
        self._local: dict[str, _Window] = {}
        self.writes = 0  # database round trips, for tests and the bench

    def chunk(self, limit: int) -> int:
        """Slots claimed per write for a limit per window: 1 below 100, else ≤ 2 % and at
        most ``max_chunk`` (20)."""
        return 1 if limit < 100 else max(1, min(limit // 50, self.max_chunk))

    async def admit(self, partner_id: str, rate_per_s: float) -> float | None:
        """None when the call is admitted, else the seconds until the partner's next window."""
        number = math.floor(self.clock() / self.window_s)
        window = self._local.get(partner_id)
        if window is None or window.number != number:
            window = self._local[partner_id] = _Window(number)
        if window.tokens > 0:
            window.tokens -= 1
            return None
        if not window.full:
            window.queued += 1
            try:
                # One claim in flight per partner and instance; the calls that queued behind
                # it meanwhile are claimed for together by the next write.
                async with window.lock:
                    if window.tokens == 0 and not window.full:
                        limit = max(1, math.floor(rate_per_s * self.window_s))
                        want = min(max(self.chunk(limit), window.queued), limit)
                        claimed_to = await self._claim(f"{partner_id}:{number}", want, number)
                        window.tokens += max(0, min(want, limit - (claimed_to - want)))
                        window.full = claimed_to >= limit  # nothing left, here or elsewhere
                    if window.tokens > 0:
                        window.tokens -= 1
                        return None
            finally:
                window.queued -= 1
        return (number + 1) * self.window_s - self.clock()

    async def _claim(self, window_id: str, chunk: int, number: int) -> int:
        """Add ``chunk`` to the window's count in one atomic write; the count after it."""
        update = {
            "$inc": {"n": chunk},
            "$setOnInsert": {
                "expires_at": datetime.fromtimestamp((number + 2) * self.window_s, UTC)
            },
        }
        async with asyncio.timeout(self.timeout_s):
            for attempt in range(2):
                self.writes += 1
                try:
                    doc = await self.windows.find_one_and_update(
                        {"_id": window_id}, update, upsert=True,
                        return_document=ReturnDocument.AFTER,
                    )  # fmt: skip
                except DuplicateKeyError:
                    # two first writers of a window both tried to insert it: the loser's
                    # second try increments the winner's document
                    if attempt:
                        raise
                    continue
                return int(doc["n"]) if doc else chunk
        raise AssertionError("unreachable")

    async def purge(self, older_than_s: float = 60.0) -> int:
        """Delete windows that ended more than ``older_than_s`` ago."""
        cutoff = datetime.fromtimestamp(self.clock(), UTC) - timedelta(seconds=older_than_s)
        result = await self.windows.delete_many({"expires_at": {"$lt": cutoff}})
        return int(result.deleted_count)
