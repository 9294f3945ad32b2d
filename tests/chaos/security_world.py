"""The world the security scenarios (fuzz, attacks) run in: the real identity, loan, payroll and
marketing services on free loopback ports, the real signals worker and the gateway over mTLS
(``tests/integration/test_gateway_support.start_suite``), on topics and databases of their own,
with two partners that each own a verified customer, an applied-for and disbursed loan, an
enterprise with an onboarded employer and a paid payroll batch.

Every personal number the world registers (resident ID, phone and card numbers) is kept in
``World.secrets``, so a scan can look for exactly those in what comes back.

The set-up calls the gateway as a partner's client does on a loaded machine
(:class:`PatientClient`): the gateway's longest deadline on every call, and a call that ran out
of it or was refused as transient made again with the same idempotency key, after the gateway's
RetryInfo; a login starts over with a new code. The attacks and the fuzzing then use the plain
client: what they check is unchanged.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from pymongo import AsyncMongoClient

from tests.integration.harness import RUN_ID, Engines, RunningApp, engines_started, serve
from tests.integration.test_gateway_support import (
    ALL_SCOPES,
    Customer,
    Suite,
    credit_code,
    register_customer,
    start_suite,
)
from tests.integration.test_identity_service import PASSWORD
from tests.integration.test_payroll_flow import cards
from zerocontact.gateway.v1 import identity_pb2, loan_pb2, payroll_pb2
from zerocontact.marketing.app import create_app as marketing_app
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.partner_client import PartnerClient, cny, error_details, new_key

OPERATOR_KEY = "chaos-operator-key-0123456789abcdef-0123"  # loan's and marketing's back office
PARTNERS = ("shop-a", "bank-b")
SCOPES = [*ALL_SCOPES, "webhooks:read", "webhooks:write"]
# The set-up's calls: the gateway's longest deadline (max_deadline_s; the client's default is
# 10 s), and a call that ran out of it or was refused as transient tried again for this long.
CALL_DEADLINE_S = 30.0
SETUP_PATIENCE_S = 600.0
TRANSIENT = frozenset(
    {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
)
T = TypeVar("T")


def retry_after_s(error: grpc.aio.AioRpcError) -> float | None:
    """The gateway's RetryInfo delay of a refusal, if it sent one."""
    for detail in error_details(error):
        if isinstance(detail, error_details_pb2.RetryInfo):
            return float(detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9)
    return None


@dataclass
class PatientClient(PartnerClient):
    """A partner's client as a partner runs it where calls may be slow: every mutation is made
    with one idempotency key however often it is tried (the gateway runs it once and replays
    its answer), and a call that ends ``DEADLINE_EXCEEDED``, ``UNAVAILABLE`` or ``ABORTED``
    (``REQUEST_IN_PROGRESS``: the first try still running) is tried again after the gateway's
    RetryInfo or a back-off (0.5 s doubling to 5 s), for up to ``SETUP_PATIENCE_S``. A login
    is not replayed by the gateway (its answer is a token): trying it again is a new login.
    ``retried`` counts the tries again per method."""

    retried: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, plain: PartnerClient, retried: Counter[str]) -> PatientClient:
        """The same channel and credential, with ``CALL_DEADLINE_S`` per call."""
        return cls(plain.channel, plain.credential, CALL_DEADLINE_S, retried)

    async def patiently(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until it answers, tried again while it fails as transient."""
        give_up = time.monotonic() + SETUP_PATIENCE_S
        delay = 0.5
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as error:
                if error.code() not in TRANSIENT or time.monotonic() > give_up:
                    raise
                self.retried[method] += 1
                print(
                    f"world: {method} ended {error.code().name}; trying again",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(retry_after_s(error) or delay)
                delay = min(delay * 2, 5.0)

    async def register_customer(
        self, request: identity_pb2.RegisterCustomerRequest, *, key: str | None = None
    ) -> Any:
        key = key or new_key()
        register = super().register_customer
        return await self.patiently("RegisterCustomer", lambda: register(request, key=key))

    async def register_enterprise(
        self, request: identity_pb2.RegisterEnterpriseRequest, *, token: str, key: str | None = None
    ) -> Any:
        key = key or new_key()
        register = super().register_enterprise
        return await self.patiently(
            "RegisterEnterprise", lambda: register(request, token=token, key=key)
        )

    async def start_authentication(
        self, phone: str, password: str, *, device_id: str, sms: bool = False
    ) -> Any:
        start = super().start_authentication
        return await self.patiently(
            "StartAuthentication", lambda: start(phone, password, device_id=device_id, sms=sms)
        )

    async def verify_customer(self, party_id: str, *, token: str) -> Any:
        key = new_key()

        async def verify() -> Any:
            r = await self.identity.VerifyCustomer(
                identity_pb2.VerifyCustomerRequest(party_id=party_id),
                metadata=self.metadata(token=token, key=key),
                timeout=self.timeout_s,
            )
            return r.party

        return await self.patiently("VerifyCustomer", verify)

    async def apply_for_loan(
        self, request: loan_pb2.ApplyForLoanRequest, *, token: str, key: str | None = None
    ) -> Any:
        key = key or new_key()
        apply = super().apply_for_loan
        return await self.patiently("ApplyForLoan", lambda: apply(request, token=token, key=key))

    async def accept_loan_offer(
        self, application_id: str, *, token: str, key: str | None = None
    ) -> Any:
        key = key or new_key()
        accept = super().accept_loan_offer
        return await self.patiently(
            "AcceptLoanOffer", lambda: accept(application_id, token=token, key=key)
        )

    async def payroll_call(self, method: str, request: Any, *, token: str) -> Any:
        """A PayrollService mutation (its raw stub), with one idempotency key."""
        key = new_key()
        stub = getattr(self.payroll, method)
        return await self.patiently(
            method,
            lambda: stub(
                request, metadata=self.metadata(token=token, key=key), timeout=self.timeout_s
            ),
        )


@dataclass
class Holdings:
    """What one partner created through the gateway."""

    customer: Customer
    aal1_token: str
    application_id: str
    loan_id: str
    enterprise_id: str
    representative: Customer
    batch_id: str
    cards: list[str]


@dataclass
class World:
    suite: Suite
    marketing: RunningApp
    holdings: dict[str, Holdings] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    retried: Counter[str] = field(default_factory=Counter)  # the set-up's calls tried again

    def client(self, partner: str, *, credential: str | None = None) -> PartnerClient:
        return self.suite.client(partner, credential=credential)

    @property
    def identity_keys(self) -> Any:
        """Identity's signing key ring (what a forger must not have)."""
        return self.suite.identity.app.state.ctx.keys


@contextmanager
def engines_from_env() -> Iterator[Engines]:
    """The engines ``KAFKA_BOOTSTRAP_SERVERS``/``MONGODB_URI`` name; else the embedded ones
    (``engines.py start --engines-only --if-needed``, stopped afterwards only if started here)."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Engines(kafka, mongo, "external")
        return

    def refused(error: str) -> NoReturn:
        sys.exit(f"embedded engines did not start: {error}")

    with engines_started(["--engines-only", "--if-needed"], [], refused=refused):
        yield Engines(
            f"127.0.0.1:{os.environ.get('ZC_KAFKA_PORT', '9092')}",
            f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', '27017')}/",
            "embedded",
        )


async def _holdings(world: World, partner: str) -> Holdings:
    suite = world.suite
    async with PatientClient.of(suite.client(partner), world.retried) as zc:
        customer = await register_customer(suite, zc)
        aal1 = await zc.start_authentication(
            customer.person.phone, PASSWORD, device_id=customer.device_id
        )
        token = customer.token
        application = await zc.apply_for_loan(
            loan_pb2.ApplyForLoanRequest(
                party_id=customer.party_id, product_id="merchant-310", amount=cny(3_000_000),
                term_months=12, purpose="inventory", device_id=customer.device_id,
            ),
            token=token,
        )  # fmt: skip
        loan_id = ""
        async for update in zc.watch_loan_application(
            application.application_id, token=token, timeout_s=90
        ):
            if update.application.state == "APPROVED" and not loan_id:
                loan_id = (
                    await zc.accept_loan_offer(application.application_id, token=token)
                ).loan_id
            if update.terminal:
                break
        rep = await register_customer(suite, zc)
        enterprise = await zc.register_enterprise(
            identity_pb2.RegisterEnterpriseRequest(
                name=f"Chaos {partner} Ltd", credit_code=credit_code(),
                legal_representative_id=rep.party_id, business_category="F",
                registered_capital=cny(100_000_000),
            ),
            token=rep.token,
        )  # fmt: skip
        employer_id = enterprise.party_id
        await zc.payroll_call(
            "OnboardEmployer", payroll_pb2.OnboardEmployerRequest(employer_id=employer_id),
            token=rep.token,
        )  # fmt: skip
        await zc.payroll_call(
            "TopUpWallet",
            payroll_pb2.TopUpWalletRequest(
                employer_id=employer_id, rail_reference=f"IN-{uuid.uuid4().hex[:10]}",
                amount=cny(1_000_000),
            ),
            token=rep.token,
        )  # fmt: skip
        numbers = cards(3, seed=hash(partner) & 0xFFFF)
        submitted = await zc.payroll_call(
            "SubmitPayrollBatch",
            payroll_pb2.SubmitPayrollBatchRequest(
                employer_id=employer_id, item_count=3, control_sum=cny(300_000),
                items=[
                    payroll_pb2.PayrollItem(payee_name=f"员工{i}", card_number=c, amount=cny(100_000))
                    for i, c in enumerate(numbers)
                ],
            ),
            token=rep.token,
        )  # fmt: skip
        batch_id = submitted.batch.batch_id
        await zc.payroll_call(
            "ApprovePayrollBatch",
            payroll_pb2.ApprovePayrollBatchRequest(batch_id=batch_id),
            token=rep.token,
        )
    for person in (customer.person, rep.person):
        world.secrets.update({person.rid, person.phone, person.phone.removeprefix("+86")})
    world.secrets.update(numbers)
    return Holdings(
        customer, aal1.access_token, application.application_id, loan_id, employer_id, rep,
        batch_id, numbers,
    )  # fmt: skip


@asynccontextmanager
async def running_world(engines: Engines) -> AsyncIterator[World]:
    """Start everything, make each partner's holdings; stop it all at the end."""
    async with AsyncExitStack() as stack:
        admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
        await admin.start()
        stack.push_async_callback(admin.close)
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            engines.mongodb_uri, serverSelectionTimeoutMS=10_000, tz_aware=True
        )
        stack.push_async_callback(mongo.close)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zc-chaos-")))
        started: list[Suite] = []
        stack.push_async_callback(_delete_topics, admin, started)  # after the services stop
        suite = await start_suite(engines, admin, mongo, tmp, stack)
        started.append(suite)
        tag = uuid.uuid4().hex[:8]
        mdb = f"t{RUN_ID}_chaos_mkt_{tag}"
        mkt_topic = f"{suite.topics.risk}-mkt-events"
        # marketing reads the assistant's topic too: one of the world's own, or its consumer
        # waits for `assistant.events.v1` (absent from fresh engines) and logs it ten times a second
        await admin.create_topics(
            [NewTopic(f"{mkt_topic}{suffix}", 3, 1) for suffix in ("", "-notes", "-assistant")]
        )
        stack.push_async_callback(mongo.drop_database, mdb)
        settings = MarketingSettings(
            kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
            mongodb_database=mdb, consumer_group=f"t{RUN_ID}-chaos-mkt-{tag}", topic=mkt_topic,
            notifications_topic=f"{mkt_topic}-notes", identity_topic=suite.topics.identity,
            loan_topic=suite.topics.loan, payroll_topic=suite.topics.payroll,
            engagement_topic=f"{suite.topics.risk}-engagement", operator_key=OPERATOR_KEY,
            assistant_topic=f"{mkt_topic}-assistant",
            outbox_sweep_interval_s=1.0,
        )  # type: ignore[arg-type]  # fmt: skip
        marketing = await stack.enter_async_context(serve(marketing_app(settings)))
        for partner in PARTNERS:
            await suite.add_partner(partner, SCOPES, rate=100_000)
        world = World(suite, marketing)
        began = time.monotonic()
        for partner, held in zip(
            PARTNERS, await asyncio.gather(*(_holdings(world, p) for p in PARTNERS)), strict=True
        ):
            world.holdings[partner] = held
        retried = ", ".join(f"{m} {n}" for m, n in sorted(world.retried.items())) or "none"
        print(
            f"world: holdings in {time.monotonic() - began:.0f} s (load average"
            f" {os.getloadavg()[0]:.1f}); calls tried again: {retried}",
            file=sys.stderr,
            flush=True,
        )
        yield world


async def _delete_topics(admin: AIOKafkaAdminClient, started: list[Suite]) -> None:
    if not started:
        return
    prefix = started[0].topics.identity.removesuffix("-identity")
    names = [t for t in await admin.list_topics() if t.startswith(prefix)]
    if names:
        await admin.delete_topics(names)


_DIGITS = re.compile(r"\d{6,}")


def leaks(text: str, secrets: set[str]) -> list[str]:
    """The personal numbers of ``secrets`` that appear unmasked in ``text``, masked for the
    report (first 3 characters only)."""
    found = [s for s in secrets if s and s in text]
    return [f"{s[:3]}…({len(s)})" for s in found]
