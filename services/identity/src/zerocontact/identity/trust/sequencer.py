"""The log's sequencer: any replica queues leaves, the holder of a lease integrates them.

Trillian's model. A replica that takes a signing request inserts a *queued leaf* into
``trust_log_queue`` keyed by the contract id (a second insert for the same contract is a
duplicate key: one leaf per contract, however often the request is retried). Exactly one
replica, the holder of the writer's lease in ``trust_log_state`` (:meth:`MerkleLog.claim`,
renewed every third of ``lease_s``, given up on a clean stop), reads the queue, integrates the
pending leaves as one batch (dense indexes in its chosen order), publishes a signed tree head
of the new size, and marks each queued leaf with its ``index`` and that ``tree_size``. The
replica that took the request waits for the mark (in-process when it is the sequencer, else
by reading the queued leaf by ``_id``), builds the receipt and completes the contract, then
deletes the queued leaf. The queue therefore holds only leaves in flight, and a scan of it is
cheap on FerretDB 1.24 (which scans even ``{_id: x}`` lookups): its cost is proportional to
the leaves in flight, not to the log.

Crash points: a writer dying after its state move but before its marks leaves the batch's
ids in the state's ``last_batch``; the next holder marks them again before reading the queue,
so no leaf is integrated twice. Integrated leaves whose waiter is gone (process killed,
deadline passed) are completed by the holder's sweep after ``sweep_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.identity import metrics
from zerocontact.identity.trust.log import ConcurrentWriter, MerkleLog
from zerocontact.platform.jobs import PeriodicJob
from zerocontact.platform.telemetry import deferred_span

log = logging.getLogger(__name__)
QUEUE = "trust_log_queue"
SCAN_LIMIT = 10_000  # the queue holds leaves in flight only; this bounds one scan regardless
Document = dict[str, Any]


class LeafQueue:
    """Queued leaves, one per contract (``_id`` = the contract id)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        """The queue collection of ``db``."""
        self.coll = db[QUEUE]

    async def enqueue(self, doc: Document) -> bool:
        """Queue a leaf; False if one is queued under this ``_id`` already."""
        try:
            await self.coll.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, qid: str) -> Document | None:
        """A queued leaf by id (``index``/``tree_size`` set once it is integrated)."""
        return await self.coll.find_one({"_id": qid})

    async def scan(self) -> list[Document]:
        """Every queued leaf (pending and integrated-but-not-completed)."""
        return await self.coll.find({}).limit(SCAN_LIMIT).to_list()

    async def mark(self, ids: Sequence[str], first: int, *, tree_size: int) -> None:
        """Record each leaf's index (idempotent: marking again writes the same values)."""
        at = datetime.now(UTC)
        await asyncio.gather(
            *(
                self.coll.update_one(
                    {"_id": qid},
                    {"$set": {"index": first + n, "tree_size": tree_size, "integrated_at": at}},
                )
                for n, qid in enumerate(ids)
            )
        )

    async def remove(self, qid: str) -> None:
        """Drop a queued leaf once its contract is complete."""
        await self.coll.delete_one({"_id": qid})


def pending_order(docs: Sequence[Document]) -> list[Document]:
    """The not-yet-integrated leaves in the order they get indexes (queued time, then id)."""
    pending = [d for d in docs if d.get("index") is None]
    return sorted(pending, key=lambda d: (_aware(d["queued_at"]), str(d["_id"])))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Sequencer:
    """Claims and renews the lease, integrates queued leaves, completes abandoned ones.

    Its loop is a :class:`PeriodicJob` ticking every ``poll_s``: the holder steps at every
    tick, the others try to claim the lease (and refresh their view of the log) five times
    per lease period, or at once when a leaf was queued here (:meth:`wake`). A tick that found
    the queue empty doubles the wait, up to ``idle_poll_s`` (at most a fifth of the lease, so
    the holder still renews in time): an idle log costs a read a second, not twenty.
    """

    def __init__(
        self, log_: MerkleLog, queue: LeafQueue, *, holder: str, lease_s: float, poll_s: float,
        batch_max: int, sweep_after_s: float, idle_poll_s: float = 1.0,
        publish_head: Callable[[], Awaitable[object]],
        complete: Callable[[Document], Awaitable[object]],
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        """``publish_head`` signs and stores a head of the log's current size (if new);
        ``complete`` finishes the contract of an integrated queued leaf."""
        self.log, self.queue, self.holder = log_, queue, holder
        self.lease_ms, self.poll_s = int(lease_s * 1000), poll_s
        self.idle_poll_s = min(max(idle_poll_s, poll_s), lease_s / 5)
        self.batch_max, self.sweep_after_s = batch_max, sweep_after_s
        self._publish_head, self._complete, self._clock = publish_head, complete, clock
        self.leader = False
        self._unmarked = False
        self._lease_until = 0
        self._renew_at = 0
        self._sweep_at = 0.0
        # When a replica without the lease tries again (monotonic: a wall-clock step back
        # must not hold the takeover up).
        self._claim_at = 0.0
        self._woken = False
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self.job: PeriodicJob | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def start(self) -> None:
        """Run the loop in the background (a job named ``trust-log-sequencer``)."""
        self.job = PeriodicJob(
            "trust-log-sequencer", self.poll_s, self.tick, idle_interval_s=self.idle_poll_s
        )
        self.job.start()

    def wake(self) -> None:
        """A leaf was queued here: sequence now rather than at the next poll."""
        self._woken = True
        if self.job is not None:
            self.job.wake()

    async def tick(self) -> bool:
        """One tick of the loop: step, unless this replica does not hold the lease, was not
        woken and tried to claim it less than a fifth of a lease period ago. A failed step
        is logged by the job and tried again at the next tick (engines down). False when
        there was nothing to do: the job then polls less often, up to ``idle_poll_s``."""
        if not self.leader and not self._woken and time.monotonic() < self._claim_at:
            return False
        woken, self._woken = self._woken, False
        try:
            return await self.step() or woken
        finally:
            if not self.leader:
                self._claim_at = time.monotonic() + self.lease_ms / 5000
            metrics.sequencer_state(size=self.log.size, leader=self.leader)

    async def step(self) -> bool:
        """One round: keep or take the lease; as holder, integrate and sweep. True when the
        queue held leaves (integrated now or waiting for the sweep)."""
        now = self._now_ms()
        if not self.leader:
            if not await self.log.claim(self.holder, now_ms=now, lease_ms=self.lease_ms):
                await self.log.refresh()
                return False
            self.leader, self._lease_until = True, now + self.lease_ms
            self._renew_at = now + self.lease_ms // 3
            log.info("trust log lease taken", extra={"epoch": self.log.epoch})
            await self._recover()
        elif now >= self._renew_at:
            if not await self.log.renew(now_ms=now, lease_ms=self.lease_ms):
                await self._step_down("lease taken by another instance")
                return False
            self._lease_until, self._renew_at = now + self.lease_ms, now + self.lease_ms // 3
        if self._now_ms() >= self._lease_until:  # could not renew in time: stop writing
            await self._step_down("lease lapsed")
            return False
        try:
            if self._unmarked:  # the last batch's head or marks failed: finish them first
                await self._recover()
            docs = await self.queue.scan()
            await self._sequence(docs)
            if self._clock() >= self._sweep_at:
                self._sweep_at = self._clock() + 1.0
                await self._sweep(docs)
        except ConcurrentWriter:
            await self._step_down("fenced out by a newer epoch")
            return False
        return bool(docs)

    async def _step_down(self, why: str) -> None:
        self.leader = False
        log.warning("trust log lease lost", extra={"reason": why})
        await self.log.refresh(force=True)

    async def _recover(self) -> None:
        """Publish a head of the current size and finish marking the last committed batch
        (its writer may have died between the state move and the marks)."""
        await self._publish_head()
        first, ids = await self.log.last_batch()
        if ids:
            await self.queue.mark(ids, first, tree_size=first + len(ids))
            self._resolve(ids)
        self._unmarked = False

    async def _sequence(self, docs: Sequence[Document]) -> int:
        batch = pending_order(docs)[: self.batch_max]
        if not batch:
            return 0
        ids = [str(d["_id"]) for d in batch]
        # The integration continues the trace of the oldest leaf's signing request and links
        # the others' (only a tick that has leaves to integrate makes a span).
        with deferred_span(
            "trust.log.sequence",
            traceparent=batch[0].get("traceparent"),
            links=[d.get("traceparent") for d in batch[1:]],
            attributes={"zerocontact.trust.leaves": len(ids)},
        ):
            # Until the marks are written these leaves look pending: if anything below fails,
            # the next step marks them from the state's last_batch instead of integrating
            # them again.
            self._unmarked = True
            first = await self.log.append_batch([bytes(d["leaf"]) for d in batch], ids=ids)
            await self._publish_head()  # before the marks: a marked leaf always has its head
            await self.queue.mark(ids, first, tree_size=first + len(ids))
            self._unmarked = False
        self._resolve(ids)
        return len(ids)

    async def _sweep(self, docs: Sequence[Document]) -> None:
        """Complete integrated leaves nobody is waiting for any more."""
        cutoff = self._clock() - self.sweep_after_s
        for doc in docs:
            at = doc.get("integrated_at")
            if doc.get("index") is None or at is None or _aware(at).timestamp() > cutoff:
                continue
            if doc["_id"] in self._waiters:
                continue
            try:
                await self._complete(doc)
                log.info("queued leaf completed by the sweep", extra={"queue_id": doc["_id"]})
            except Exception as exc:  # one bad contract must not stop the others
                log.warning("sweep failed", extra={"queue_id": doc["_id"], "error": repr(exc)})

    def _resolve(self, ids: Sequence[str]) -> None:
        for qid in ids:
            waiter = self._waiters.get(qid)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def wait(self, qid: str, *, within_s: float) -> Document | None:
        """The queued leaf once integrated; the pending one at the deadline; None if it is
        gone (its contract was completed meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        waiter = self._waiters.setdefault(qid, loop.create_future())
        try:
            while True:
                doc = await self.queue.get(qid)
                if doc is None or doc.get("index") is not None:
                    return doc
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return doc
                # Notified at once when this process sequences; polled when another does.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), min(self.poll_s, remaining))
        finally:
            self._waiters.pop(qid, None)

    async def stop(self) -> None:
        """Stop the loop and give the lease up so another replica takes over at once."""
        if self.job is not None:
            await self.job.stop()
        if self.leader:
            self.leader = False
            metrics.sequencer_state(size=self.log.size, leader=False)
            with contextlib.suppress(Exception):
                await self.log.release()
