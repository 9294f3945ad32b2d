"""PayrollService: employers, wallets and salary batches of a partner's enterprises."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.gateway import convert
from zerocontact.gateway.convert import require_uuid
from zerocontact.gateway.errors import invalid, invalid_fields
from zerocontact.gateway.guard import Caller, Gateway, streaming, unary
from zerocontact.gateway.servicers.scopes import PAYROLL_READ, PAYROLL_WRITE
from zerocontact.gateway.v1 import payroll_pb2, payroll_pb2_grpc
from zerocontact.gateway.watch import RESUME_TOKEN_HEADER, Resumable

BATCH_TERMINAL = {"COMPLETED", "REFUSED"}


class PayrollServicer(payroll_pb2_grpc.PayrollServiceServicer):
    """Employers, wallets and salary batches of a partner's enterprises."""

    SERVICE = "PayrollService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @unary(PAYROLL_WRITE, mutating=True, response=payroll_pb2.OnboardEmployerResponse)
    async def OnboardEmployer(
        self, request: payroll_pb2.OnboardEmployerRequest, caller: Caller
    ) -> payroll_pb2.OnboardEmployerResponse:
        """Onboard an enterprise of the partner."""
        employer_id = require_uuid(request.employer_id, "employer_id")
        await self.gateway.require_owner("party", employer_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.payroll.request(
            "POST",
            "/v1/employers",
            caller.call(),
            body={"employer_id": employer_id, "maker_checker": request.maker_checker},
        )
        return payroll_pb2.OnboardEmployerResponse(employer=convert.employer(view))

    @unary(PAYROLL_WRITE, mutating=True, response=payroll_pb2.TopUpWalletResponse)
    async def TopUpWallet(
        self, request: payroll_pb2.TopUpWalletRequest, caller: Caller
    ) -> payroll_pb2.TopUpWalletResponse:
        """Credit an incoming transfer."""
        employer_id = require_uuid(request.employer_id, "employer_id")
        if not request.rail_reference:
            raise invalid("rail_reference", "required")
        amount, currency = convert.major(request.amount, "amount")
        if currency != "CNY":
            raise invalid("amount.currency_code", "payroll wallets hold CNY")
        await self.gateway.require_owner("party", employer_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.payroll.request(
            "POST",
            f"/v1/employers/{employer_id}/top-ups",
            caller.call(),
            body={"rail_reference": request.rail_reference, "amount": amount},
        )
        view.setdefault("employer_id", employer_id)
        return payroll_pb2.TopUpWalletResponse(employer=convert.employer(view))

    @unary(PAYROLL_WRITE, mutating=True, response=payroll_pb2.SubmitPayrollBatchResponse)
    async def SubmitPayrollBatch(
        self, request: payroll_pb2.SubmitPayrollBatchRequest, caller: Caller
    ) -> payroll_pb2.SubmitPayrollBatchResponse:
        """Submit a salary batch; the partner owns it."""
        employer_id = require_uuid(request.employer_id, "employer_id")
        if not request.items:
            raise invalid("items", "at least one item")
        control_sum, currency = convert.major(request.control_sum, "control_sum", positive=False)
        items = []
        problems: list[tuple[str, str]] = []
        for i, item in enumerate(request.items):
            amount, item_currency = convert.major(item.amount, f"items[{i}].amount")
            if item_currency != currency:
                problems.append((f"items[{i}].amount.currency_code", "must be the batch's"))
            entry: dict[str, Any] = {
                "payee_name": item.payee_name, "card_number": item.card_number, "amount": amount,
            }  # fmt: skip
            if item.end_to_end_id:
                entry["end_to_end_id"] = item.end_to_end_id
            if item.customer_id:
                entry["customer_id"] = item.customer_id
            items.append(entry)
        if problems:
            raise invalid_fields(problems)
        await self.gateway.require_owner("party", employer_id, caller.partner)
        caller.require_token()
        body: dict[str, Any] = {
            "items": items, "item_count": request.item_count, "control_sum": control_sum,
        }  # fmt: skip
        if request.HasField("scheduled_for"):
            body["scheduled_for"] = convert.iso(request.scheduled_for, "scheduled_for")
        view = await self.gateway.backends.payroll.request(
            "POST", f"/v1/employers/{employer_id}/batches", caller.call(), body=body
        )
        await self.gateway.record_owner("batch", view["batch_id"], caller.partner)
        return payroll_pb2.SubmitPayrollBatchResponse(batch=convert.batch(view))

    @unary(PAYROLL_WRITE, mutating=True, response=payroll_pb2.ApprovePayrollBatchResponse)
    async def ApprovePayrollBatch(
        self, request: payroll_pb2.ApprovePayrollBatchRequest, caller: Caller
    ) -> payroll_pb2.ApprovePayrollBatchResponse:
        """Approve (AAL2 token of the employer's representative)."""
        batch_id = require_uuid(request.batch_id, "batch_id")
        await self.gateway.require_owner("batch", batch_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.payroll.request(
            "POST", f"/v1/batches/{batch_id}/approval", caller.call()
        )
        return payroll_pb2.ApprovePayrollBatchResponse(batch=convert.batch(view))

    async def _batch(self, batch_id: str, caller: Caller) -> payroll_pb2.PayrollBatch:
        view = await self.gateway.backends.payroll.request(
            "GET", f"/v1/batches/{batch_id}", caller.call()
        )
        return convert.batch(view)

    @unary(PAYROLL_READ)
    async def GetPayrollBatch(
        self, request: payroll_pb2.GetPayrollBatchRequest, caller: Caller
    ) -> payroll_pb2.GetPayrollBatchResponse:
        """A batch of the partner."""
        batch_id = require_uuid(request.batch_id, "batch_id")
        await self.gateway.require_owner("batch", batch_id, caller.partner)
        caller.require_token()
        return payroll_pb2.GetPayrollBatchResponse(batch=await self._batch(batch_id, caller))

    @streaming(PAYROLL_READ, resumable=True)
    async def WatchPayrollBatch(
        self, request: payroll_pb2.WatchPayrollBatchRequest, caller: Caller
    ) -> AsyncIterator[payroll_pb2.WatchPayrollBatchResponse]:
        """The batch now, then its progress as payroll.events.v1 reports it, until it ends;
        with ``resume_token``, the batch now only if events were missed since the token.

        Each burst of events (coalesced over 200 ms) triggers one read of the batch, so a
        10,000-item batch costs a few reads a second, not one per salary."""
        batch_id = require_uuid(request.batch_id, "batch_id")
        await self.gateway.require_owner("batch", batch_id, caller.partner)
        caller.require_token()
        hub = self.gateway.hub
        key = f"batch:{batch_id}"
        with hub.watch(key) as queue:
            stream = Resumable(hub, hub.payroll_topic, key, caller.partner.partner_id)
            stream.resume(request.resume_token)
            assert caller.accept is not None
            await caller.accept((RESUME_TOKEN_HEADER, stream.token()))
            replayed = await stream.replay([key])
            kind, event_id = "", ""
            for notice in replayed:
                stream.take(notice)
                kind, event_id = notice.kind, notice.event_id
            batch = await self._batch(batch_id, caller)
            if not request.resume_token or replayed:
                yield _progress(batch, kind, event_id, stream.token())
            last = batch.SerializeToString(deterministic=True)
            while batch.state not in BATCH_TERMINAL:
                notice = await queue.get()
                if not stream.take(notice):
                    continue
                kind, event_id = notice.kind, notice.event_id
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        while True:
                            more = await queue.get()
                            if stream.take(more):
                                kind, event_id = more.kind, more.event_id
                batch = await self._batch(batch_id, caller)
                now = batch.SerializeToString(deterministic=True)
                if now != last:
                    last = now
                    yield _progress(batch, kind, event_id, stream.token())


def _progress(
    batch: payroll_pb2.PayrollBatch, kind: str, event_id: str, token: str
) -> payroll_pb2.WatchPayrollBatchResponse:
    observed = Timestamp()
    observed.FromDatetime(datetime.now(UTC))
    return payroll_pb2.WatchPayrollBatchResponse(
        batch=batch, event=kind, terminal=batch.state in BATCH_TERMINAL, observed_at=observed,
        event_id=event_id, resume_token=token,
    )  # fmt: skip
