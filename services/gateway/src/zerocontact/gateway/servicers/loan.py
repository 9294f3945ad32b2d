"""LoanService: products, applications, offers and loans of a partner's parties."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from zerocontact.gateway import convert
from zerocontact.gateway.convert import require_uuid
from zerocontact.gateway.errors import invalid_fields
from zerocontact.gateway.guard import Caller, Gateway, streaming, unary
from zerocontact.gateway.servicers.scopes import LOANS_READ, LOANS_WRITE
from zerocontact.gateway.v1 import loan_pb2, loan_pb2_grpc
from zerocontact.gateway.watch import RESUME_TOKEN_HEADER, Notice, Resumable
from zerocontact.signals.v1 import risk_pb2

LOAN_TERMINAL = {"DISBURSED", "DISBURSEMENT_FAILED", "SETTLED"}


class LoanServicer(loan_pb2_grpc.LoanServiceServicer):
    """Products, applications, offers and loans of a partner's parties."""

    SERVICE = "LoanService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        # (loop time it expires, the response): the catalogue is the loan service's
        # configuration, the same for every partner
        self._products: tuple[float, loan_pb2.ListLoanProductsResponse] | None = None

    @unary(LOANS_READ)
    async def ListLoanProducts(
        self, request: loan_pb2.ListLoanProductsRequest, caller: Caller
    ) -> loan_pb2.ListLoanProductsResponse:
        """The catalogue (kept ``products_cache_s``)."""
        now = asyncio.get_running_loop().time()
        if self._products is not None and now < self._products[0]:
            return self._products[1]
        views = await self.gateway.backends.loan.request(
            "GET", "/v1/products", caller.call(with_token=False)
        )
        response = loan_pb2.ListLoanProductsResponse(products=[convert.product(v) for v in views])
        if self.gateway.settings.products_cache_s > 0:
            self._products = (now + self.gateway.settings.products_cache_s, response)
        return response

    @unary(LOANS_WRITE, mutating=True, response=loan_pb2.ApplyForLoanResponse)
    async def ApplyForLoan(
        self, request: loan_pb2.ApplyForLoanRequest, caller: Caller
    ) -> loan_pb2.ApplyForLoanResponse:
        """Apply for a party of the partner."""
        problems: list[tuple[str, str]] = []
        if not convert.UUID.match(request.party_id):
            problems.append(("party_id", "must be a UUID"))
        for name in ("product_id", "purpose", "device_id"):
            if not getattr(request, name):
                problems.append((name, "required"))
        if request.term_months <= 0:
            problems.append(("term_months", "must be greater than 0"))
        if problems:
            raise invalid_fields(problems)
        amount, currency = convert.major(request.amount, "amount")
        caller.require_token()
        await self.gateway.require_owner("party", request.party_id, caller.partner)
        body = {
            "party_id": request.party_id, "product_id": request.product_id, "amount": amount,
            "currency": currency, "term_months": request.term_months, "purpose": request.purpose,
            "device_id": request.device_id,
            "source_address": request.source_address or caller.peer_address,
        }  # fmt: skip
        view = await self.gateway.backends.loan.request(
            "POST", "/v1/applications", caller.call(), body=body, renames={"currency": "amount"}
        )
        await self.gateway.record_owner("application", view["application_id"], caller.partner)
        return loan_pb2.ApplyForLoanResponse(application=convert.application(view))

    async def _application(self, application_id: str, caller: Caller) -> dict[str, Any]:
        view: dict[str, Any] = await self.gateway.backends.loan.request(
            "GET", f"/v1/applications/{application_id}", caller.call()
        )
        return view

    @unary(LOANS_READ)
    async def GetLoanApplication(
        self, request: loan_pb2.GetLoanApplicationRequest, caller: Caller
    ) -> loan_pb2.GetLoanApplicationResponse:
        """An application of the partner."""
        application_id = require_uuid(request.application_id, "application_id")
        await self.gateway.require_owner("application", application_id, caller.partner)
        caller.require_token()
        view = await self._application(application_id, caller)
        return loan_pb2.GetLoanApplicationResponse(application=convert.application(view))

    @streaming(LOANS_READ, resumable=True)
    async def WatchLoanApplication(
        self, request: loan_pb2.WatchLoanApplicationRequest, caller: Caller
    ) -> AsyncIterator[loan_pb2.WatchLoanApplicationResponse]:
        """The current state, then every change (from loan.events.v1) until a terminal state;
        with ``resume_token``, the changes since that token instead of the current state.

        After the first read, states are built from the events themselves: the party's token
        (5 minutes) need not outlive the watch. A token carries the state the stream had
        folded (application state, loan state, loan id), so a resumed stream folds the missed
        events from where the partner was."""
        application_id = require_uuid(request.application_id, "application_id")
        await self.gateway.require_owner("application", application_id, caller.partner)
        caller.require_token()
        hub = self.gateway.hub
        key = f"application:{application_id}"
        with hub.watch(key) as queue:
            stream = Resumable(hub, hub.loan_topic, key, caller.partner.partner_id)
            stream.resume(request.resume_token)
            assert caller.accept is not None
            await caller.accept((RESUME_TOKEN_HEADER, stream.token(stream.state)))
            app = convert.application(await self._application(application_id, caller))
            loan: loan_pb2.Loan | None = None
            keys = [key]
            followed: set[str] = set()  # the loan's key, once known
            if app.loan_id:
                keys.append(f"loan:{app.loan_id}")
                followed.add(f"loan:{app.loan_id}")
                hub.add_key(queue, f"loan:{app.loan_id}")
            resumed = stream.state  # (application state, loan state, loan id) at the token
            if resumed:
                app.state = resumed[0]
                app.loan_id = resumed[2] if len(resumed) > 2 else ""
            if app.loan_id:
                loan = convert.loan(
                    await self.gateway.backends.loan.request(
                        "GET", f"/v1/loans/{app.loan_id}", caller.call()
                    )
                )
                if resumed:
                    loan.state = resumed[1]
            replayed = await stream.replay(keys)
            try:
                terminal = _loan_terminal(app, loan)

                def state() -> tuple[str, ...]:
                    return (app.state, loan.state if loan else "", app.loan_id)

                if not resumed:
                    yield loan_pb2.WatchLoanApplicationResponse(
                        application=app, loan=loan, terminal=terminal,
                        resume_token=stream.token(state()),
                    )  # fmt: skip
                last = state()
                while not terminal:
                    notice = replayed.pop(0) if replayed else await queue.get()
                    if not stream.take(notice):
                        continue
                    loan = _apply_loan_event(app, loan, notice)
                    if app.loan_id and f"loan:{app.loan_id}" not in followed:
                        followed.add(f"loan:{app.loan_id}")
                        hub.add_key(queue, f"loan:{app.loan_id}")
                    if state() == last:
                        continue  # a duplicate, or an event that changes no state
                    last = state()
                    terminal = _loan_terminal(app, loan)
                    yield loan_pb2.WatchLoanApplicationResponse(
                        application=app, loan=loan, event=notice.kind, terminal=terminal,
                        event_id=notice.event_id, resume_token=stream.token(last),
                    )  # fmt: skip
            finally:
                for loan_key in followed:
                    hub.remove_key(queue, loan_key)

    @unary(LOANS_WRITE, mutating=True, response=loan_pb2.AcceptLoanOfferResponse)
    async def AcceptLoanOffer(
        self, request: loan_pb2.AcceptLoanOfferRequest, caller: Caller
    ) -> loan_pb2.AcceptLoanOfferResponse:
        """Accept an approved offer with the party's AAL2 token."""
        application_id = require_uuid(request.application_id, "application_id")
        await self.gateway.require_owner("application", application_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.loan.request(
            "POST", f"/v1/applications/{application_id}/acceptance", caller.call()
        )
        await self.gateway.record_owner("loan", view["loan_id"], caller.partner)
        return loan_pb2.AcceptLoanOfferResponse(loan=convert.loan(view))

    @unary(LOANS_READ)
    async def GetLoan(
        self, request: loan_pb2.GetLoanRequest, caller: Caller
    ) -> loan_pb2.GetLoanResponse:
        """A loan of the partner: from the read model when it holds a view it may serve and
        the party's token, verified here, is the borrower's; else from the loan service (which
        also decides for a borrower's representative)."""
        loan_id = require_uuid(request.loan_id, "loan_id")
        await self.gateway.require_owner("loan", loan_id, caller.partner)
        token = caller.require_token()
        views, partner_id, key = self.gateway.views, caller.partner.partner_id, f"loan:{loan_id}"
        if views.enabled:
            held = views.get(key, partner_id)
            if held is not None and await self.gateway.party_of(token) == held[0]:
                response: loan_pb2.GetLoanResponse = held[1]
                return response
        stamp = views.begin(key, partner_id)
        view = await self.gateway.backends.loan.request(
            "GET", f"/v1/loans/{loan_id}", caller.call()
        )
        response = loan_pb2.GetLoanResponse(loan=convert.loan(view))
        views.store(key, (view["party_id"], response), stamp)
        return response

    @unary(LOANS_WRITE, mutating=True, response=loan_pb2.RepayLoanResponse)
    async def RepayLoan(
        self, request: loan_pb2.RepayLoanRequest, caller: Caller
    ) -> loan_pb2.RepayLoanResponse:
        """Repay a loan of the partner from the borrower's settlement account."""
        loan_id = require_uuid(request.loan_id, "loan_id")
        amount, currency = convert.major(request.amount, "amount")
        await self.gateway.require_owner("loan", loan_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.loan.request(
            "POST",
            f"/v1/loans/{loan_id}/repayments",
            caller.call(),
            body={"amount": amount, "currency": currency},
            renames={"currency": "amount"},
        )
        return loan_pb2.RepayLoanResponse(
            repayment_id=view["repayment_id"],
            principal=convert.money(view["principal"], currency),
            interest=convert.money(view["interest"], currency),
            penalty=convert.money(view["penalty"], currency),
            settled=bool(view["settled"]),
            loan_state=view["loan_state"],
            loan_lifecycle_state=convert.loan_state(view["loan_state"]),
        )

    @unary(LOANS_WRITE, mutating=True, response=loan_pb2.ReportMerchantRevenueResponse)
    async def ReportMerchantRevenue(
        self, request: loan_pb2.ReportMerchantRevenueRequest, caller: Caller
    ) -> loan_pb2.ReportMerchantRevenueResponse:
        """A platform partner reports its merchant's revenue (the partner is the platform)."""
        problems: list[tuple[str, str]] = []
        if not convert.SAFE_ID.match(request.report_id):
            problems.append(("report_id", "1-64 characters of A-Z a-z 0-9 _ . : -"))
        if not convert.UUID.match(request.party_id):
            problems.append(("party_id", "must be a UUID"))
        for name in ("period_start", "period_end"):
            if not request.HasField(name):
                problems.append((name, "required"))
        if not problems and convert.when(request.period_end, "period_end") <= convert.when(
            request.period_start, "period_start"
        ):
            problems.append(("period_end", "must be after period_start"))
        if problems:
            raise invalid_fields(problems)
        amount, currency = convert.major(request.revenue, "revenue", positive=False)
        await self.gateway.require_owner("party", request.party_id, caller.partner)
        view = await self.gateway.backends.loan.request(
            "POST",
            "/v1/merchant-revenue-reports",
            caller.call(with_token=False),
            body={
                "report_id": request.report_id,
                "party_id": request.party_id,
                "platform_id": caller.partner.partner_id,
                "revenue": amount,
                "currency": currency,
                "period_start": convert.iso(request.period_start, "period_start"),
                "period_end": convert.iso(request.period_end, "period_end"),
            },
            renames={"currency": "revenue"},
        )
        return loan_pb2.ReportMerchantRevenueResponse(
            report_id=view["report_id"], duplicate=bool(view["duplicate"])
        )


def _loan_terminal(app: loan_pb2.LoanApplication, loan: loan_pb2.Loan | None) -> bool:
    return app.state == "DECLINED" or (loan is not None and loan.state in LOAN_TERMINAL)


def _apply_loan_event(
    app: loan_pb2.LoanApplication, loan: loan_pb2.Loan | None, notice: Notice
) -> loan_pb2.Loan | None:
    """Fold one loan event into the watched application (and its loan); returns the loan."""
    e = notice.message
    if notice.kind == "loan_approved" and app.state == "AWAITING_RISK":
        app.state = "APPROVED"
        app.offered_amount.CopyFrom(e.offered_amount)
        app.annual_rate, app.risk_score = e.annual_rate, e.risk_score
        app.risk_band = _band(e.risk_band)
        del app.reasons[:]
        app.reasons.extend(
            loan_pb2.DecisionReason(code=r.code, description=r.description) for r in e.reasons
        )
        app.offer_expires_at.CopyFrom(e.offer_expires_at)
    elif notice.kind == "loan_declined" and app.state == "AWAITING_RISK":
        app.state = "DECLINED"
        app.risk_score, app.risk_band = e.risk_score, _band(e.risk_band)
        del app.reasons[:]
        app.reasons.extend(
            loan_pb2.DecisionReason(code=r.code, description=r.description) for r in e.reasons
        )
    elif notice.kind == "loan_offer_accepted" and app.state in ("APPROVED", "AWAITING_RISK"):
        app.state, app.loan_id = "ACCEPTED", e.loan_id
        if loan is None:
            loan = loan_pb2.Loan(
                loan_id=e.loan_id, application_id=app.application_id, party_id=app.party_id,
                product_id=app.product_id, state="BOOKED", principal=app.offered_amount,
                annual_rate=app.annual_rate, term_months=app.term_months,
            )  # fmt: skip
    elif notice.kind == "loan_disbursed":
        app.state, app.loan_id = "ACCEPTED", e.loan_id
        loan = loan or loan_pb2.Loan(
            loan_id=e.loan_id, application_id=app.application_id, party_id=app.party_id,
            product_id=app.product_id, annual_rate=app.annual_rate, term_months=app.term_months,
        )  # fmt: skip
        loan.state = "DISBURSED"
        loan.principal.CopyFrom(e.principal)
        loan.disbursed_at.CopyFrom(e.disbursed_at)
    elif notice.kind == "loan_settled" and loan is not None:
        loan.state = "SETTLED"
    convert.sync_states(app, loan)
    return loan


def _band(value: risk_pb2.RiskBand.ValueType) -> str:
    return risk_pb2.RiskBand.Name(value).removeprefix("RISK_BAND_")
