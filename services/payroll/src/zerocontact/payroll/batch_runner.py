"""Pays an approved batch item by item through the rail, exactly once per EndToEndId.

Per chunk of items (one rail request, ≤ 1,000):

1. items PENDING → SENT (attempt counted) — persisted BEFORE the rail is called;
2. one bulk rail request; the rail is idempotent by EndToEndId, so re-sending after a crash
   returns the first result and never pays twice;
3. final answers are inserted into ``item_outcomes`` (first decision wins) and projected onto
   the items; retryable answers (timeouts) go back to PENDING and are re-sent with capped
   exponential back-off until ``max_attempts``, then fail with AB05;
4. once every item of the chunk is final, one ledger posting moves the chunk's paid sum from
   the batch reserve to the rail (id ``payroll:salary:<batch>:c<k>``: the amount is a function
   of immutable outcomes, so a replay finds the same posting), then the chunk's SalaryPaid /
   SalaryPaymentFailed events are published with ids derived from the outcomes, and only then
   is the chunk marked done.

The stored outcomes are the chunk's outbox: its events are a pure function of them, so a run
that dies between the outcomes and the mark re-settles (same posting id) and re-publishes (same
event ids; consumers drop duplicates by ``ce_id``) when it resumes. Keeping the events in a
separate outbox document cost a ~500 KB write, read and rewrite per chunk on the database
that also serializes the ledger's writes (docs/payroll.md, "Benchmark").

When every chunk is done, the unused reserve is released and the batch completes. Start-up
recovery and the scheduler resume every batch left EXECUTING (a run that failed on an engine
outage); each step above is safe to repeat.

A run is a ``payroll.batch.run`` span continuing the trace of the batch's submission (stored
with the batch; the approving request that started the run is linked), with one
``payroll.batch.chunk`` span per chunk: the SalaryPaid / SalaryPaymentFailed events and the
BatchCompleted continue the submission's trace. A run that has nothing to do makes no span.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zerocontact.payroll import events as ev
from zerocontact.payroll import metrics
from zerocontact.payroll.domain import accounts
from zerocontact.payroll.domain.aggregates import Batch
from zerocontact.payroll.domain.batches import BatchState, RetryPolicy, batch_status
from zerocontact.payroll.rail import CreditTransfer, PaymentRail, RailResult, RailStatus
from zerocontact.payroll.repository import BATCHES, ConcurrentUpdate, PayrollRepository
from zerocontact.payroll.repository.documents import outcome_document
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka import EventPublisher
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.money import Money
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.pii import FieldCipher
from zerocontact.platform.telemetry import deferred_span, tracer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerConfig:
    """How a batch is driven."""

    topic: str
    rail_concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long a batch stays claimed by a process that stopped renewing (crashed) before
    # another process may resume it. Renewed every third of it while the run lasts.
    lease_s: float = 15.0


def card_context(batch_id: str) -> str:
    """The FieldCipher context of a batch item's card number."""
    return f"payroll.batch_item.card:{batch_id}"


class BatchRunner:
    """Drives batches to completion; safe to run twice on the same batch (each step is)."""

    def __init__(
        self,
        *,
        repo: PayrollRepository,
        ledger: Ledger,
        rail: PaymentRail,
        relay: OutboxRelay,
        publisher: EventPublisher,
        cipher: FieldCipher,
        config: RunnerConfig,
    ) -> None:
        self._repo = repo
        self._ledger = ledger
        self._rail = rail
        self._relay = relay
        self._publisher = publisher
        self._cipher = cipher
        self._config = config
        self._running: dict[str, asyncio.Task[None]] = {}
        self._owner = new_id()  # this process, in batch leases
        self._settling = asyncio.Lock()

    def start(self, batch_id: str) -> asyncio.Task[None]:
        """Run ``batch_id`` in the background (one task per batch per process)."""
        task = self._running.get(batch_id)
        if task is None or task.done():
            task = asyncio.create_task(self.run(batch_id), name=f"payroll-batch-{batch_id}")
            self._running[batch_id] = task
            task.add_done_callback(self._finished)
        return task

    def running(self, batch_id: str) -> bool:
        """True while this process runs ``batch_id``."""
        task = self._running.get(batch_id)
        return task is not None and not task.done()

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "batch run failed; recovery will resume it", extra={"error": repr(task.exception())}
            )

    async def stop(self) -> None:
        """Cancel running batches (a restart resumes them)."""
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def run(self, batch_id: str) -> None:
        """Pay every open item of an APPROVED or EXECUTING batch, then complete it.

        Only under the batch's lease: with several replicas each resumes EXECUTING batches,
        and two runs of one batch, though safe, would send every open item to the rail twice.
        """
        lease_s = self._config.lease_s
        if not await self._repo.claim_batch(batch_id, self._owner, lease_s):
            return  # another process holds it; the scheduler tries again after it lapses
        run = asyncio.current_task()
        renewing = asyncio.create_task(self._renew(batch_id, run), name=f"lease-{batch_id}")
        try:
            await self._run(batch_id)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            with contextlib.suppress(Exception):  # else it lapses by itself
                await self._repo.release_batch(batch_id, self._owner)

    async def _renew(self, batch_id: str, run: asyncio.Task[Any] | None) -> None:
        while True:
            await asyncio.sleep(self._config.lease_s / 3)
            try:
                held = await self._repo.claim_batch(batch_id, self._owner, self._config.lease_s)
            except Exception as exc:  # database out: keep going, the next renewal may work
                log.warning("batch lease renewal failed", extra={"error": repr(exc)})
                continue
            if not held:  # lapsed and taken over: stop before paying anything more
                log.error("batch lease lost; stopping this run", extra={"batch_id": batch_id})
                if run is not None:
                    run.cancel()
                return

    async def _run(self, batch_id: str) -> None:
        found = await self._repo.batch_with_trace(batch_id)
        if found is None or found[0].state not in (BatchState.APPROVED, BatchState.EXECUTING):
            return
        batch, submitted_in = found
        with deferred_span(
            "payroll.batch.run",
            traceparent=submitted_in,
            attributes={"payroll.batch_id": batch_id, "payroll.chunks": batch.chunks},
        ):
            await self._run_batch(batch)

    async def _run_batch(self, batch: Batch) -> None:
        batch_id = batch.batch_id
        if batch.state == BatchState.APPROVED:
            await self._repo.start_executing(batch_id)
        done = batch.chunks_done
        # A fresh batch has no outcomes or attempts yet; a resumed one (EXECUTING: recovery or
        # a second runner) reads them once for the whole batch. Reading per chunk scanned the
        # collection once per chunk (FerretDB pushes down only _id filters): quadratic.
        resumed = batch.state == BatchState.EXECUTING
        outcomes = await self._repo.batch_outcomes(batch_id) if resumed else {}
        attempts = await self._repo.batch_attempts(batch_id) if resumed else {}
        gate = asyncio.Semaphore(self._config.rail_concurrency)
        chunks = range(batch.chunks)
        ran = await asyncio.gather(
            *(
                self._run_chunk(
                    batch, chunk, gate, outcomes.get(chunk, []), attempts.get(chunk, Counter())
                )
                for chunk in chunks
                if chunk not in done
            )
        )
        final = [o for chunk in chunks if chunk in done for o in outcomes.get(chunk, [])]
        await self._complete(
            batch_id, final + [o for chunk_outcomes in ran for o in chunk_outcomes]
        )

    async def _run_chunk(
        self,
        batch: Batch,
        chunk: int,
        gate: asyncio.Semaphore,
        decided: list[Document],
        attempts: Counter[str],
    ) -> list[Document]:
        """Pay one chunk's open items and settle it; returns the chunk's outcomes."""
        with tracer().start_as_current_span(
            "payroll.batch.chunk",
            attributes={"payroll.batch_id": batch.batch_id, "payroll.chunk": chunk},
        ):
            return await self._pay_chunk(batch, chunk, gate, decided, attempts)

    async def _pay_chunk(
        self,
        batch: Batch,
        chunk: int,
        gate: asyncio.Semaphore,
        decided: list[Document],
        attempts: Counter[str],
    ) -> list[Document]:
        batch_id = batch.batch_id
        retry = self._config.retry
        async with gate:  # bounds concurrent reads as it bounds rail requests
            items = await self._repo.chunk_items(batch_id, chunk)
        outcomes = {o["end_to_end_id"]: o for o in decided}
        open_items = [i for i in items if i["end_to_end_id"] not in outcomes]
        while open_items:
            async with gate:
                await self._repo.record_attempt(
                    batch_id, chunk, [i["end_to_end_id"] for i in open_items]
                )
                transfers = [
                    CreditTransfer(
                        end_to_end_id=i["end_to_end_id"],
                        card_number=self._cipher.decrypt(
                            i["card_enc"], context=card_context(batch_id)
                        ),
                        payee_name=i["payee_name"],
                        amount=Money(batch.currency, int(i["amount_minor"])),
                    )
                    for i in open_items
                ]
                results = await self._rail.credit_transfers(transfers)
            final, again = [], []
            now = datetime.now(UTC)
            for item, result in zip(open_items, results, strict=True):
                attempts[item["end_to_end_id"]] += 1
                made = attempts[item["end_to_end_id"]]
                if result.retryable and not retry.exhausted(made):
                    again.append(item)
                else:
                    final.append(_outcome(batch, item, result, made, now))
            for stored in await self._repo.record_outcomes(final):
                outcomes[stored["end_to_end_id"]] = stored
            open_items = again
            if again:
                await asyncio.sleep(retry.delay(min(attempts[i["end_to_end_id"]] for i in again)))
        await self._settle_chunk(batch, chunk, list(outcomes.values()))
        return list(outcomes.values())

    async def _settle_chunk(self, batch: Batch, chunk: int, outcomes: list[Document]) -> None:
        batch_id, employer_id = batch.batch_id, batch.employer_id
        paid = sum(int(o["amount_minor"]) for o in outcomes if o["state"] == "PAID")
        if paid:
            # One posting at a time per process: every chunk's posting touches the rail
            # account (and its batch's reserve), and concurrent appends to one account chain
            # retry each other (10,000 items: 11.7 s of posting time before, 1.1 s after).
            async with self._settling:
                await self._ledger.post(
                    f"payroll:salary:{batch_id}:c{chunk:05d}",
                    accounts.settle(batch_id, Money(batch.currency, paid)),
                    memo=f"salaries of batch {batch_id} chunk {chunk}",
                )
        item_events = [
            ev.item_event(topic=self._config.topic, employer_id=employer_id, outcome=o)
            for o in outcomes
        ]
        # Published before the chunk is marked done (see the module docstring): a broker
        # outage fails the run here and the scheduler resumes it.
        await self._publisher.publish_in_order([(e.topic, e.key, e.event) for e in item_events])
        await self._repo.mark_chunk_done(batch_id, chunk)

    async def _complete(self, batch_id: str, outcomes: list[Document]) -> None:
        batch = await self._repo.batch(batch_id)
        if batch is None or batch.state != BatchState.EXECUTING:
            return
        # every outcome of the batch is in memory (read at resumption or written by this run)
        paid = sum(1 for o in outcomes if o["state"] == "PAID")
        failed = len(outcomes) - paid
        paid_minor = sum(int(o["amount_minor"]) for o in outcomes if o["state"] == "PAID")
        if paid + failed != batch.item_count:
            return  # not every item is final: a concurrent runner or recovery will finish
        currency, employer_id = batch.currency, batch.employer_id
        released = batch.control_sum_minor - paid_minor
        if released:
            await self._ledger.post(
                f"payroll:release:{batch_id}",
                accounts.release(employer_id, batch_id, Money(currency, released)),
                memo=f"unused reserve of batch {batch_id}",
            )
        status = batch_status(paid, failed, 0)
        now = datetime.now(UTC)
        event = ev.batch_completed(
            topic=self._config.topic,
            batch_id=batch_id,
            employer_id=employer_id,
            status=status,
            paid_items=paid,
            failed_items=failed,
            paid=Money(currency, paid_minor),
            released=Money(currency, released),
            at=now,
        )
        try:
            await self._repo.complete_batch(
                batch,
                status=status,
                paid_items=paid,
                failed_items=failed,
                paid_minor=paid_minor,
                released_minor=released,
                completed_at=now,
                events=[event],
            )
        except ConcurrentUpdate:
            return  # another runner completed it with the same figures
        self._relay.nudge(BATCHES, batch_id)
        metrics.batch_completed(batch.submitted_at, now)


def _outcome(
    batch: Batch, item: Document, result: RailResult, attempts: int, now: datetime
) -> Document:
    paid = result.status is RailStatus.ACSC
    return outcome_document(
        batch_id=batch.batch_id,
        currency=batch.currency,
        item=item,
        paid=paid,
        rail_reference=result.reference,
        reason_code="" if paid else (result.reason_code or "NARR"),
        reason="" if paid else (result.reason or "rejected by the rail"),
        attempts=attempts,
        decided_at=now,
    )


def chunk_count(items: int, chunk_size: int) -> int:
    """Chunks of ``chunk_size`` needed for ``items``."""
    return max(1, -(-items // chunk_size))


__all__: Sequence[str] = ["BatchRunner", "RunnerConfig", "card_context", "chunk_count"]
