"""The gateway's gRPC services: each RPC checks ownership, calls one service's HTTP API and
maps the answer. The envelope (authentication, scopes, rate, deadline, idempotency, audit,
errors) is :mod:`zerocontact.gateway.guard`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import jwt
from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.gateway import convert
from zerocontact.gateway.convert import require_uuid
from zerocontact.gateway.errors import GatewayError, invalid, invalid_fields
from zerocontact.gateway.guard import Caller, Gateway, streaming, unary
from zerocontact.gateway.v1 import (
    identity_pb2,
    identity_pb2_grpc,
    loan_pb2,
    loan_pb2_grpc,
    payroll_pb2,
    payroll_pb2_grpc,
    signals_pb2,
    signals_pb2_grpc,
)
from zerocontact.gateway.watch import ALERTS, Notice
from zerocontact.signals.v1 import risk_pb2

IDENTITY_WRITE = "identity:write"
IDENTITY_READ = "identity:read"
LOANS_WRITE = "loans:write"
LOANS_READ = "loans:read"
PAYROLL_WRITE = "payroll:write"
PAYROLL_READ = "payroll:read"
SIGNALS_READ = "signals:read"
SCOPES = (
    IDENTITY_WRITE, IDENTITY_READ, LOANS_WRITE, LOANS_READ, PAYROLL_WRITE, PAYROLL_READ,
    SIGNALS_READ,
)  # fmt: skip

LOAN_TERMINAL = {"DISBURSED", "DISBURSEMENT_FAILED", "SETTLED"}
BATCH_TERMINAL = {"COMPLETED", "REFUSED"}


def _subject(token: str) -> str:
    """The subject of an access token identity just issued (read, not verified: the token came
    straight from identity; the services verify every token they are given)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims.get("sub", ""))


def _required(request: Any, *names: str) -> None:
    missing = [(n, "required") for n in names if not getattr(request, n)]
    if missing:
        raise invalid_fields(missing)


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Registration and authentication of a partner's parties."""

    SERVICE = "IdentityService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @unary(IDENTITY_WRITE, mutating=True, response=identity_pb2.RegisterCustomerResponse)
    async def RegisterCustomer(
        self, request: identity_pb2.RegisterCustomerRequest, caller: Caller
    ) -> identity_pb2.RegisterCustomerResponse:
        """Register a customer; the partner owns it."""
        _required(request, "name", "resident_id", "phone", "date_of_birth", "address", "password")
        body = {
            "name": request.name, "resident_id": request.resident_id, "phone": request.phone,
            "date_of_birth": request.date_of_birth, "address": request.address,
            "password": request.password,
        }  # fmt: skip
        view = await self.gateway.backends.identity.request(
            "POST", "/v1/customers", caller.call(with_token=False), body=body
        )
        await self.gateway.record_owner("party", view["customer_id"], caller.partner)
        return identity_pb2.RegisterCustomerResponse(party=convert.customer(view))

    @unary(IDENTITY_WRITE, mutating=True, response=identity_pb2.RegisterEnterpriseResponse)
    async def RegisterEnterprise(
        self, request: identity_pb2.RegisterEnterpriseRequest, caller: Caller
    ) -> identity_pb2.RegisterEnterpriseResponse:
        """Register an enterprise whose representative is a customer of the partner."""
        _required(request, "name", "credit_code", "legal_representative_id", "business_category")
        rep = require_uuid(request.legal_representative_id, "legal_representative_id")
        amount, currency = convert.major(request.registered_capital, "registered_capital")
        caller.require_token()
        await self.gateway.require_owner("party", rep, caller.partner)
        body = {
            "name": request.name, "credit_code": request.credit_code,
            "legal_representative_id": rep, "business_category": request.business_category,
            "registered_capital": {"amount": amount, "currency": currency},
        }  # fmt: skip
        view = await self.gateway.backends.identity.request(
            "POST", "/v1/enterprises", caller.call(), body=body
        )
        await self.gateway.record_owner("party", view["enterprise_id"], caller.partner)
        await self.gateway.record_owner("enterprise", view["enterprise_id"], caller.partner)
        return identity_pb2.RegisterEnterpriseResponse(party=convert.enterprise(view))

    @unary(IDENTITY_READ)
    async def GetParty(
        self, request: identity_pb2.GetPartyRequest, caller: Caller
    ) -> identity_pb2.GetPartyResponse:
        """A party of the partner, masked (with the party's own token)."""
        party_id = require_uuid(request.party_id, "party_id")
        await self.gateway.require_owner("party", party_id, caller.partner)
        caller.require_token()
        if await self.gateway.owners.owner("enterprise", party_id) == caller.partner.partner_id:
            view = await self.gateway.backends.identity.request(
                "GET", f"/v1/enterprises/{party_id}", caller.call()
            )
            return identity_pb2.GetPartyResponse(party=convert.enterprise(view))
        view = await self.gateway.backends.identity.request(
            "GET", f"/v1/customers/{party_id}", caller.call()
        )
        return identity_pb2.GetPartyResponse(party=convert.customer(view))

    @unary(IDENTITY_WRITE)
    async def StartAuthentication(
        self, request: identity_pb2.StartAuthenticationRequest, caller: Caller
    ) -> identity_pb2.StartAuthenticationResponse:
        """Password login (AAL1) of a customer of the partner; optionally an SMS challenge.

        Not replayed by idempotency key: the answer is a bearer token, which the gateway does
        not store; a retry simply authenticates again."""
        _required(request, "phone", "password", "device_id")
        view = await self.gateway.backends.identity.request(
            "POST",
            "/v1/sessions",
            caller.call(with_token=False, device_id=request.device_id),
            body={"phone": request.phone, "password": request.password},
        )
        party_id = _subject(view["access_token"])
        await self._owned_subject(party_id, caller)
        response = identity_pb2.StartAuthenticationResponse(
            party_id=party_id,
            access_token=view["access_token"],
            expires_in=int(view["expires_in"]),
            assurance_level=convert.aal(view["aal"]),
        )
        if request.send_sms_challenge:
            caller.token = view["access_token"]
            challenge = await self.gateway.backends.identity.request(
                "POST",
                "/v1/sessions/sms-challenges",
                caller.call(device_id=request.device_id),
            )
            response.sms_challenge_id = challenge["challenge_id"]
        return response

    async def _owned_subject(self, party_id: str, caller: Caller) -> None:
        if await self.gateway.owners.owner("party", party_id) != caller.partner.partner_id:
            raise GatewayError(
                grpc.StatusCode.PERMISSION_DENIED,
                "PARTY_NOT_OF_PARTNER",
                "this customer was not registered through this partner",
            )

    @unary(IDENTITY_WRITE)
    async def CompleteAuthentication(
        self, request: identity_pb2.CompleteAuthenticationRequest, caller: Caller
    ) -> identity_pb2.CompleteAuthenticationResponse:
        """Second factor on the AAL1 token: an AAL2 token (not stored, so not replayed)."""
        token = caller.require_token()
        methods = {
            identity_pb2.SECOND_FACTOR_TOTP: "totp",
            identity_pb2.SECOND_FACTOR_SMS: "sms",
            identity_pb2.SECOND_FACTOR_RECOVERY_CODE: "recovery_code",
        }
        if request.factor not in methods:
            raise invalid("factor", "must be TOTP, SMS or RECOVERY_CODE")
        _required(request, "code", "device_id")
        body: dict[str, Any] = {"method": methods[request.factor], "code": request.code}
        if request.factor == identity_pb2.SECOND_FACTOR_SMS:
            body["challenge_id"] = require_uuid(request.sms_challenge_id, "sms_challenge_id")
        try:
            await self._owned_subject(_subject(token), caller)
        except jwt.InvalidTokenError as exc:
            raise invalid("authorization", "not an access token") from exc
        view = await self.gateway.backends.identity.request(
            "POST",
            "/v1/sessions/step-up",
            caller.call(device_id=request.device_id),
            body=body,
        )
        return identity_pb2.CompleteAuthenticationResponse(
            party_id=_subject(view["access_token"]),
            access_token=view["access_token"],
            expires_in=int(view["expires_in"]),
            assurance_level=convert.aal(view["aal"]),
            methods=list(view.get("amr") or []),
        )

    @unary(IDENTITY_WRITE, mutating=True, response=identity_pb2.VerifyCustomerResponse)
    async def VerifyCustomer(
        self, request: identity_pb2.VerifyCustomerRequest, caller: Caller
    ) -> identity_pb2.VerifyCustomerResponse:
        """KYC BASIC → VERIFIED by the customer's recent two-factor authentication."""
        party_id = require_uuid(request.party_id, "party_id")
        await self.gateway.require_owner("party", party_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.identity.request(
            "POST", f"/v1/customers/{party_id}/kyc/verification", caller.call()
        )
        return identity_pb2.VerifyCustomerResponse(party=convert.customer(view))


class LoanServicer(loan_pb2_grpc.LoanServiceServicer):
    """Products, applications, offers and loans of a partner's parties."""

    SERVICE = "LoanService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @unary(LOANS_READ)
    async def ListLoanProducts(
        self, request: loan_pb2.ListLoanProductsRequest, caller: Caller
    ) -> loan_pb2.ListLoanProductsResponse:
        """The catalogue."""
        views = await self.gateway.backends.loan.request(
            "GET", "/v1/products", caller.call(with_token=False)
        )
        return loan_pb2.ListLoanProductsResponse(products=[convert.product(v) for v in views])

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

    @streaming(LOANS_READ)
    async def WatchLoanApplication(
        self, request: loan_pb2.WatchLoanApplicationRequest, caller: Caller
    ) -> AsyncIterator[loan_pb2.WatchLoanApplicationResponse]:
        """The current state, then every change (from loan.events.v1) until a terminal state.

        After the first read, states are built from the events themselves: the party's token
        (5 minutes) need not outlive the watch."""
        application_id = require_uuid(request.application_id, "application_id")
        await self.gateway.require_owner("application", application_id, caller.partner)
        caller.require_token()
        hub = self.gateway.hub
        with hub.watch(f"application:{application_id}") as queue:
            app = convert.application(await self._application(application_id, caller))
            loan: loan_pb2.Loan | None = None
            if app.loan_id:
                hub.add_key(queue, f"loan:{app.loan_id}")
                loan = convert.loan(
                    await self.gateway.backends.loan.request(
                        "GET", f"/v1/loans/{app.loan_id}", caller.call()
                    )
                )
            try:
                terminal = _loan_terminal(app, loan)
                yield loan_pb2.WatchLoanApplicationResponse(
                    application=app, loan=loan, terminal=terminal
                )
                last = (app.state, loan.state if loan else "")
                while not terminal:
                    notice = await queue.get()
                    loan = _apply_loan_event(app, loan, notice)
                    if app.loan_id:
                        hub.add_key(queue, f"loan:{app.loan_id}")
                    state = (app.state, loan.state if loan else "")
                    if state == last:
                        continue  # a duplicate, or an event that changes no state
                    last = state
                    terminal = _loan_terminal(app, loan)
                    yield loan_pb2.WatchLoanApplicationResponse(
                        application=app, loan=loan, event=notice.kind, terminal=terminal
                    )
            finally:
                if app.loan_id:
                    hub.remove_key(queue, f"loan:{app.loan_id}")

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
        """A loan of the partner."""
        loan_id = require_uuid(request.loan_id, "loan_id")
        await self.gateway.require_owner("loan", loan_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.loan.request(
            "GET", f"/v1/loans/{loan_id}", caller.call()
        )
        return loan_pb2.GetLoanResponse(loan=convert.loan(view))

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
        if not problems and request.period_end.ToDatetime() <= request.period_start.ToDatetime():
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
                "period_start": convert.iso(request.period_start),
                "period_end": convert.iso(request.period_end),
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
    return loan


def _band(value: risk_pb2.RiskBand.ValueType) -> str:
    return risk_pb2.RiskBand.Name(value).removeprefix("RISK_BAND_")


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
            body["scheduled_for"] = convert.iso(request.scheduled_for)
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

    @streaming(PAYROLL_READ)
    async def WatchPayrollBatch(
        self, request: payroll_pb2.WatchPayrollBatchRequest, caller: Caller
    ) -> AsyncIterator[payroll_pb2.WatchPayrollBatchResponse]:
        """The batch now, then its progress as payroll.events.v1 reports it, until it ends.

        Each burst of events (coalesced over 200 ms) triggers one read of the batch, so a
        10,000-item batch costs a few reads a second, not one per salary."""
        batch_id = require_uuid(request.batch_id, "batch_id")
        await self.gateway.require_owner("batch", batch_id, caller.partner)
        caller.require_token()
        with self.gateway.hub.watch(f"batch:{batch_id}") as queue:
            batch = await self._batch(batch_id, caller)
            yield _progress(batch, "")
            last = batch.SerializeToString(deterministic=True)
            while batch.state not in BATCH_TERMINAL:
                notice = await queue.get()
                kind = notice.kind
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        while True:
                            kind = (await queue.get()).kind
                batch = await self._batch(batch_id, caller)
                now = batch.SerializeToString(deterministic=True)
                if now != last:
                    last = now
                    yield _progress(batch, kind)


def _progress(batch: payroll_pb2.PayrollBatch, kind: str) -> payroll_pb2.WatchPayrollBatchResponse:
    observed = Timestamp()
    observed.FromDatetime(datetime.now(UTC))
    return payroll_pb2.WatchPayrollBatchResponse(
        batch=batch, event=kind, terminal=batch.state in BATCH_TERMINAL, observed_at=observed
    )


class SignalServicer(signals_pb2_grpc.SignalServiceServicer):
    """Risk alerts about the partner's own parties."""

    SERVICE = "SignalService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @streaming(SIGNALS_READ)
    async def WatchRiskAlerts(
        self, request: signals_pb2.WatchRiskAlertsRequest, caller: Caller
    ) -> AsyncIterator[signals_pb2.WatchRiskAlertsResponse]:
        """Alerts raised from now on about the partner's parties, until cancelled."""
        only = request.party_id
        if only:
            require_uuid(only, "party_id")
            await self.gateway.require_owner("party", only, caller.partner)
        with self.gateway.hub.watch(ALERTS) as queue:
            while True:
                alert = (await queue.get()).message
                if only and alert.party_id != only:
                    continue
                if await self.gateway.owners.owner("party", alert.party_id) != (
                    caller.partner.partner_id
                ):
                    continue
                yield signals_pb2.WatchRiskAlertsResponse(
                    alert_id=alert.alert_id,
                    party_id=alert.party_id,
                    kind=risk_pb2.RiskAlertKind.Name(alert.kind),
                    reasons=[r.description for r in alert.reasons],
                    raised_at=alert.raised_at,
                )
