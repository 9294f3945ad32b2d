"""zerocontact-partner-client: a small typed asyncio client for the partner gateway: an mTLS
channel, the partner credential on every call, the party's token and an idempotency key where
a call needs them, the request id of a call and the google.rpc details of a refusal. Its own
distribution (clients/python): it needs grpcio, protobuf and zerocontact-contracts, no service
(docs/clients.md). It was ``zerocontact.partner_client`` before: the gateway no longer ships it.

    async with PartnerClient.connect("gateway.example:50051", ca=..., cert=..., key=...,
                                     credential="zcp_...") as zc:
        products = await zc.list_loan_products()

The channel carries the gateway's published gRPC service config (:data:`SERVICE_CONFIG`,
``service_config.json`` beside this module): gRPC itself retries a call that ends
``UNAVAILABLE`` (a party the service has not heard of yet, a service briefly unreachable) up to
3 attempts within the call's deadline, waiting what the gateway's ``grpc-retry-pushback-ms``
says. Mutations are safe to retry: each attempt carries the same idempotency key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import grpc
from grpc_status import rpc_status  # type: ignore[import-untyped]

from zerocontact.common.v1 import money_pb2
from zerocontact.gateway.v1 import (
    assistant_pb2,
    assistant_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    loan_pb2,
    loan_pb2_grpc,
    payroll_pb2,
    payroll_pb2_grpc,
    signals_pb2,
    signals_pb2_grpc,
    webhooks_pb2_grpc,
)

if TYPE_CHECKING:  # the asyncio stubs exist in the generated .pyi only
    from zerocontact.gateway.v1.assistant_pb2_grpc import AssistantServiceAsyncStub
    from zerocontact.gateway.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from zerocontact.gateway.v1.loan_pb2_grpc import LoanServiceAsyncStub
    from zerocontact.gateway.v1.payroll_pb2_grpc import PayrollServiceAsyncStub
    from zerocontact.gateway.v1.signals_pb2_grpc import SignalServiceAsyncStub
    from zerocontact.gateway.v1.webhooks_pb2_grpc import WebhookServiceAsyncStub

RESUME_TOKEN_HEADER = "x-resume-token"
SIGNATURE_HEADER = "Zerocontact-Signature"


class WebhookSignatureError(ValueError):
    """A webhook whose signature does not verify (or is too old): answer 400, do not act."""


def verify_webhook(
    body: bytes, header: str, secret: str, *, tolerance_s: float = 300, now: float | None = None
) -> dict[str, object]:
    """The event of a webhook delivery, after checking its ``Zerocontact-Signature`` header.

    Verify the raw body bytes as received (before any JSON parsing). The header is
    ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`` (several ``v1`` during a
    secret rotation); a timestamp further than ``tolerance_s`` from now is refused (replay
    protection). Then dedupe by the event's ``id``: a delivery can arrive more than once."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not signatures:
        raise WebhookSignatureError("malformed signature header")
    stamp = int(stamps[0])
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        raise WebhookSignatureError("timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookSignatureError("signature mismatch")
    event: dict[str, object] = json.loads(body)
    return event


@dataclass
class Resume:
    """Where a watch stream is: pass the same object to a watch again after a disconnect and
    it resumes after the last message it delivered (keep ``token`` somewhere durable to
    resume across restarts). Tokens are opaque, bound to the partner and the watched stream."""

    token: str = ""


SERVICE_CONFIG: str = resources.files(__name__).joinpath("service_config.json").read_text()
"""The gateway's gRPC service config (JSON): the retry policy for ``UNAVAILABLE``."""


def channel_options(*, retries: bool = True) -> list[tuple[str, str | int]]:
    """gRPC channel options that install :data:`SERVICE_CONFIG` (any grpc/grpc.aio channel)."""
    if not retries:
        return [("grpc.enable_retries", 0)]
    json.loads(SERVICE_CONFIG)  # fail here, not inside gRPC core, if the file is broken
    return [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]


def new_key() -> str:
    """A fresh idempotency key (keep it to retry the same call)."""
    return uuid.uuid4().hex


def cny(amount_minor: int) -> money_pb2.Money:
    """CNY in fen."""
    return money_pb2.Money(currency_code="CNY", minor_units=amount_minor)


def error_details(error: grpc.aio.AioRpcError) -> list[object]:
    """The google.rpc details (ErrorInfo, BadRequest, RetryInfo, RequestInfo) of a failed call,
    unpacked."""
    from google.rpc import error_details_pb2  # type: ignore[import-untyped]

    status = rpc_status.from_call(error)
    out: list[object] = []
    for detail in status.details if status else []:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            error_details_pb2.RequestInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                out.append(message)
    return out


def request_id_of(error: grpc.aio.AioRpcError) -> str | None:
    """The request id (``x-request-id`` trailer) of a failed call: quote it to support."""
    for key, value in error.trailing_metadata() or ():
        if key == "x-request-id" and isinstance(value, str):
            return value
    return None


@dataclass
class PartnerClient:
    """One partner's connection to the gateway."""

    channel: grpc.aio.Channel
    credential: str
    timeout_s: float = 10.0

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        ca: Path | bytes,
        cert: Path | bytes,
        key: Path | bytes,
        credential: str,
        server_name: str | None = None,
        timeout_s: float = 10.0,
        retries: bool = True,
    ) -> PartnerClient:
        """An mTLS channel presenting the partner's certificate, with the gateway's service
        config (``retries=False``: every call is one attempt)."""

        def read(v: Path | bytes) -> bytes:
            return v if isinstance(v, bytes) else Path(v).read_bytes()

        creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
        options = channel_options(retries=retries)
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        return cls(grpc.aio.secure_channel(target, creds, options=options), credential, timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.channel.close()

    @property
    def identity(self) -> IdentityServiceAsyncStub:
        """Raw stub (pass :meth:`metadata`)."""
        return identity_pb2_grpc.IdentityServiceStub(self.channel)

    @property
    def loans(self) -> LoanServiceAsyncStub:
        """Raw stub (pass :meth:`metadata`)."""
        return loan_pb2_grpc.LoanServiceStub(self.channel)

    @property
    def payroll(self) -> PayrollServiceAsyncStub:
        """Raw stub (pass :meth:`metadata`)."""
        return payroll_pb2_grpc.PayrollServiceStub(self.channel)

    @property
    def signals(self) -> SignalServiceAsyncStub:
        """Raw stub (pass :meth:`metadata`)."""
        return signals_pb2_grpc.SignalServiceStub(self.channel)

    @property
    def webhooks(self) -> WebhookServiceAsyncStub:
        """Raw stub (pass :meth:`metadata`; mutating calls need ``key=``)."""
        return webhooks_pb2_grpc.WebhookServiceStub(self.channel)

    @property
    def assistant(self) -> AssistantServiceAsyncStub:
        """Raw stub (pass :meth:`metadata` with the party's token)."""
        return assistant_pb2_grpc.AssistantServiceStub(self.channel)

    def metadata(
        self, *, token: str | None = None, key: str | None = None
    ) -> tuple[tuple[str, str], ...]:
        """The credential, and the party's token and an idempotency key when given."""
        md = [("x-partner-credential", self.credential)]
        if token:
            md.append(("authorization", f"Bearer {token}"))
        if key:
            md.append(("idempotency-key", key))
        return tuple(md)

    # -- identity -------------------------------------------------------------------------

    async def register_customer(
        self, request: identity_pb2.RegisterCustomerRequest, *, key: str | None = None
    ) -> identity_pb2.Party:
        """Register a customer."""
        r = await self.identity.RegisterCustomer(
            request, metadata=self.metadata(key=key or new_key()), timeout=self.timeout_s
        )
        return r.party

    async def register_enterprise(
        self, request: identity_pb2.RegisterEnterpriseRequest, *, token: str, key: str | None = None
    ) -> identity_pb2.Party:
        """Register an enterprise (the representative's token)."""
        r = await self.identity.RegisterEnterprise(
            request, metadata=self.metadata(token=token, key=key or new_key()),
            timeout=self.timeout_s,
        )  # fmt: skip
        return r.party

    async def start_authentication(
        self, phone: str, password: str, *, device_id: str, sms: bool = False
    ) -> identity_pb2.StartAuthenticationResponse:
        """Password login (AAL1)."""
        response: identity_pb2.StartAuthenticationResponse = (
            await self.identity.StartAuthentication(
                identity_pb2.StartAuthenticationRequest(
                    phone=phone, password=password, device_id=device_id, send_sms_challenge=sms
                ),
                metadata=self.metadata(),
                timeout=self.timeout_s,
            )
        )
        return response

    async def complete_authentication(
        self,
        token: str,
        factor: identity_pb2.SecondFactor.ValueType,
        code: str,
        *,
        device_id: str,
        sms_challenge_id: str = "",
    ) -> identity_pb2.CompleteAuthenticationResponse:
        """Second factor: an AAL2 token."""
        response: identity_pb2.CompleteAuthenticationResponse = (
            await self.identity.CompleteAuthentication(
                identity_pb2.CompleteAuthenticationRequest(
                    factor=factor, code=code, device_id=device_id, sms_challenge_id=sms_challenge_id
                ),
                metadata=self.metadata(token=token),
                timeout=self.timeout_s,
            )
        )
        return response

    async def verify_customer(self, party_id: str, *, token: str) -> identity_pb2.Party:
        """KYC VERIFIED by the customer's AAL2 token."""
        r = await self.identity.VerifyCustomer(
            identity_pb2.VerifyCustomerRequest(party_id=party_id),
            metadata=self.metadata(token=token, key=new_key()),
            timeout=self.timeout_s,
        )
        return r.party

    # -- loans ----------------------------------------------------------------------------

    async def list_loan_products(self) -> list[loan_pb2.LoanProduct]:
        """The catalogue."""
        r = await self.loans.ListLoanProducts(
            loan_pb2.ListLoanProductsRequest(), metadata=self.metadata(), timeout=self.timeout_s
        )
        return list(r.products)

    async def apply_for_loan(
        self, request: loan_pb2.ApplyForLoanRequest, *, token: str, key: str | None = None
    ) -> loan_pb2.LoanApplication:
        """Apply (the party's token)."""
        r = await self.loans.ApplyForLoan(
            request, metadata=self.metadata(token=token, key=key or new_key()),
            timeout=self.timeout_s,
        )  # fmt: skip
        return r.application

    async def watch_loan_application(
        self,
        application_id: str,
        *,
        token: str,
        timeout_s: float = 120.0,
        resume: Resume | None = None,
    ) -> AsyncIterator[loan_pb2.WatchLoanApplicationResponse]:
        """Every state change until a terminal state (after ``resume``'s position, if any)."""
        call = self.loans.WatchLoanApplication(
            loan_pb2.WatchLoanApplicationRequest(
                application_id=application_id, resume_token=resume.token if resume else ""
            ),
            metadata=self.metadata(token=token),
            timeout=timeout_s,
        )
        async for update in _resumed(call, resume):
            yield update

    async def accept_loan_offer(
        self, application_id: str, *, token: str, key: str | None = None
    ) -> loan_pb2.Loan:
        """Accept (the party's AAL2 token)."""
        r = await self.loans.AcceptLoanOffer(
            loan_pb2.AcceptLoanOfferRequest(application_id=application_id),
            metadata=self.metadata(token=token, key=key or new_key()),
            timeout=self.timeout_s,
        )
        return r.loan

    async def get_loan(self, loan_id: str, *, token: str) -> loan_pb2.Loan:
        """A loan."""
        r = await self.loans.GetLoan(
            loan_pb2.GetLoanRequest(loan_id=loan_id),
            metadata=self.metadata(token=token),
            timeout=self.timeout_s,
        )
        return r.loan

    # -- payroll and signals --------------------------------------------------------------

    async def watch_payroll_batch(
        self,
        batch_id: str,
        *,
        token: str,
        timeout_s: float = 120.0,
        resume: Resume | None = None,
    ) -> AsyncIterator[payroll_pb2.WatchPayrollBatchResponse]:
        """Progress until the batch ends (after ``resume``'s position, if any)."""
        call = self.payroll.WatchPayrollBatch(
            payroll_pb2.WatchPayrollBatchRequest(
                batch_id=batch_id, resume_token=resume.token if resume else ""
            ),
            metadata=self.metadata(token=token),
            timeout=timeout_s,
        )
        async for update in _resumed(call, resume):
            yield update

    async def watch_risk_alerts(
        self, party_id: str = "", *, timeout_s: float | None = None, resume: Resume | None = None
    ) -> AsyncIterator[signals_pb2.WatchRiskAlertsResponse]:
        """Alerts about the partner's parties; with ``resume``, those raised since its
        position first (and ``resume.token`` follows every alert delivered)."""
        call = self.signals.WatchRiskAlerts(
            signals_pb2.WatchRiskAlertsRequest(
                party_id=party_id, resume_token=resume.token if resume else ""
            ),
            metadata=self.metadata(),
            timeout=timeout_s,
        )
        async for alert in _resumed(call, resume):
            yield alert

    # -- the assistant --------------------------------------------------------------------

    async def start_conversation(
        self, party_id: str, *, token: str, key: str | None = None
    ) -> assistant_pb2.Conversation:
        """Open a conversation for the party (its own token)."""
        r = await self.assistant.StartConversation(
            assistant_pb2.StartConversationRequest(party_id=party_id),
            metadata=self.metadata(token=token, key=key or new_key()),
            timeout=self.timeout_s,
        )
        return r.conversation

    async def send_message(
        self, conversation_id: str, text: str, *, token: str, key: str | None = None
    ) -> assistant_pb2.SendMessageResponse:
        """The party's message and what it led to (the assistant acts with ``token``: pass
        a freshly stepped-up one for a repayment)."""
        response: assistant_pb2.SendMessageResponse = await self.assistant.SendMessage(
            assistant_pb2.SendMessageRequest(conversation_id=conversation_id, text=text),
            metadata=self.metadata(token=token, key=key or new_key()),
            timeout=self.timeout_s,
        )
        return response

    async def watch_conversation(
        self, conversation_id: str, *, token: str, after_seq: int = 0, timeout_s: float = 300.0
    ) -> AsyncIterator[assistant_pb2.WatchConversationResponse]:
        """New messages (the assistant's and a person's) until the conversation closes."""
        call = self.assistant.WatchConversation(
            assistant_pb2.WatchConversationRequest(
                conversation_id=conversation_id, after_seq=after_seq
            ),
            metadata=self.metadata(token=token),
            timeout=timeout_s,
        )
        async for update in call:
            yield update


async def _resumed(call: Any, resume: Resume | None) -> AsyncIterator[Any]:
    """The stream's messages; ``resume.token`` follows the stream's start position (initial
    metadata) and then every message, as the caller takes it."""
    if resume is not None:
        for key, value in await call.initial_metadata() or ():
            if key == RESUME_TOKEN_HEADER and isinstance(value, str) and value:
                resume.token = value
    async for message in call:
        if resume is not None and message.resume_token:
            resume.token = message.resume_token
        yield message
