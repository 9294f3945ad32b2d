"""Retry-safe first calls and the shared rate limit, through the real gateway (mTLS gRPC) in
front of the real identity, loan and payroll services on Kafka and FerretDB.

* register → verify → apply at once succeeds with no retry loop in the caller: loan waits,
  bounded, for identity's events about the party;
* a party loan never hears of is UNAVAILABLE / PARTY_NOT_YET_KNOWN (RetryInfo) after that
  bounded wait, and the client's published service config retried it (the audit counts the
  attempts); a party that becomes known between attempts is applied for by the retry;
* two gateway instances on one database admit a partner's rate once, not once each.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, eventually
from tests.integration.test_gateway_support import (
    ALL_SCOPES,
    AuditReader,
    Customer,
    Suite,
    register_customer,
    start_suite,
)
from zerocontact.gateway.app import running
from zerocontact.gateway.v1 import loan_pb2
from zerocontact.partner_client import PartnerClient, cny, error_details

pytestmark = pytest.mark.asyncio(loop_scope="session")
APPLY = "/zerocontact.gateway.v1.LoanService/ApplyForLoan"


@pytest.fixture(scope="module")
async def suite(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    async with AsyncExitStack() as stack:
        yield await start_suite(
            engines, kafka_admin, mongo_client, tmp_path_factory.mktemp("gw-retries"), stack,
            with_signals=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
async def audit(suite: Suite) -> AsyncIterator[AuditReader]:
    reader = AuditReader(suite.engines.kafka_bootstrap, suite.topics.audit)
    await reader.start()
    yield reader
    await reader.stop()


def apply_request(customer: Customer) -> loan_pb2.ApplyForLoanRequest:
    return loan_pb2.ApplyForLoanRequest(
        party_id=customer.party_id, product_id="merchant-310", amount=cny(3_000_000),
        term_months=12, purpose="inventory", device_id=customer.device_id,
    )  # fmt: skip


async def attempts(audit: AuditReader, partner_id: str, method: str, expected: int) -> list[Any]:
    """The audit records of ``partner_id``'s calls of ``method`` once ``expected`` arrived
    (then a little longer, so one too many would be seen)."""

    async def enough() -> list[Any] | None:
        await audit.poll()
        found = [r for r in audit.records if r.partner_id == partner_id and r.method == method]
        return found if len(found) >= expected else None

    await eventually(enough, within_s=15)
    await asyncio.sleep(0.5)
    await audit.poll()
    return [r for r in audit.records if r.partner_id == partner_id and r.method == method]


async def forgotten_by_loan(suite: Suite, mongo: AsyncMongoClient[Any], party_id: str) -> Any:
    """Wait until loan's view has the VERIFIED party, then remove it: from loan's view this
    party is one identity's events never reached (none about it will come again). Returns
    the removed document."""
    parties = mongo[suite.dbs["loan"]]["parties"]

    async def verified() -> Any:
        return await parties.find_one({"_id": party_id, "kyc_level": "VERIFIED"})

    doc = await eventually(verified, within_s=20)
    await parties.delete_one({"_id": party_id})
    return doc


def reason_and_retry(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], float | None]:
    reason, metadata, retry = "", {}, None
    for d in error_details(err):
        if isinstance(d, error_details_pb2.ErrorInfo):
            reason, metadata = d.reason, dict(d.metadata)
        elif isinstance(d, error_details_pb2.RetryInfo):
            retry = d.retry_delay.ToNanoseconds() / 1e9
    return reason, metadata, retry


async def test_register_verify_and_apply_at_once_with_no_retry_loop(
    suite: Suite, audit: AuditReader
) -> None:
    await suite.add_partner("first-calls", ALL_SCOPES)
    async with suite.client("first-calls") as zc:
        for _ in range(3):
            customer = await register_customer(suite, zc)  # registered, then VERIFIED
            application = await zc.apply_for_loan(apply_request(customer), token=customer.token)
            assert application.state == "AWAITING_RISK"
            assert application.party_id == customer.party_id
    records = await attempts(audit, "first-calls", APPLY, 3)
    assert [r.outcome for r in records] == ["OK"] * 3, records


async def test_a_party_never_known_is_unavailable_after_a_bounded_wait_and_retried(
    suite: Suite, audit: AuditReader, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    wait_s = 2.0  # LoanSettings.party_wait_s (the default the suite runs with)
    pushback_s = 1.0  # the gateway's grpc-retry-pushback-ms for PARTY_NOT_YET_KNOWN
    await suite.add_partner("never-known", ALL_SCOPES)
    async with suite.client("never-known") as zc:
        customer = await register_customer(suite, zc)
        await forgotten_by_loan(suite, mongo_client, customer.party_id)
        clock = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await zc.apply_for_loan(apply_request(customer), token=customer.token)
        elapsed = time.monotonic() - clock
    err = raised.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    reason, metadata, retry = reason_and_retry(err)
    assert reason == "PARTY_NOT_YET_KNOWN" and metadata["party_id"] == customer.party_id
    assert retry == pushback_s
    # three attempts (the service config's maxAttempts), each after loan's bounded wait
    records = await attempts(audit, "never-known", APPLY, 3)
    assert len(records) == 3, records
    assert {(r.outcome, r.reason) for r in records} == {("UNAVAILABLE", "PARTY_NOT_YET_KNOWN")}
    for r in records:
        assert wait_s <= r.latency_us / 1e6 < wait_s + 1.0, r
    # bounded: 3 waits and 2 pushbacks, well inside the client's 10 s deadline
    assert 3 * wait_s + 2 * pushback_s <= elapsed < 3 * wait_s + 2 * pushback_s + 1.5, elapsed

    # without the service config: one attempt, one bounded wait
    await suite.add_partner("no-retries", ALL_SCOPES)
    p = suite.partners["no-retries"]
    async with PartnerClient.connect(
        suite.target, ca=suite.ca.cert_pem, cert=p.cert, key=p.key, credential=p.credential,
        server_name="localhost", retries=False,
    ) as plain:  # fmt: skip
        other = await register_customer(suite, plain)
        await forgotten_by_loan(suite, mongo_client, other.party_id)
        clock = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await plain.apply_for_loan(apply_request(other), token=other.token)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert wait_s <= time.monotonic() - clock < wait_s + 1.0
    assert len(await attempts(audit, "no-retries", APPLY, 1)) == 1


async def test_a_retry_applies_once_the_party_becomes_known(
    suite: Suite, audit: AuditReader, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    await suite.add_partner("late-party", ALL_SCOPES)
    async with suite.client("late-party") as zc:
        customer = await register_customer(suite, zc)
        doc = await forgotten_by_loan(suite, mongo_client, customer.party_id)
        key = uuid.uuid4().hex
        call = asyncio.create_task(
            zc.apply_for_loan(apply_request(customer), token=customer.token, key=key)
        )
        first = await attempts(audit, "late-party", APPLY, 1)
        assert [(r.outcome, r.reason) for r in first] == [("UNAVAILABLE", "PARTY_NOT_YET_KNOWN")]
        # identity's events "arrive": the next attempt (same request, same key) is accepted
        await mongo_client[suite.dbs["loan"]]["parties"].insert_one(doc)
        application = await asyncio.wait_for(call, 10)
        assert application.state == "AWAITING_RISK"
        # the same key again: the gateway replays the stored answer (the retry was one call)
        replay = await zc.apply_for_loan(apply_request(customer), token=customer.token, key=key)
        assert replay.application_id == application.application_id
    records = await attempts(audit, "late-party", APPLY, 3)
    assert [r.outcome for r in records] == ["UNAVAILABLE", "OK", "OK"], records
    assert [r.replayed for r in records] == [False, False, True]


async def test_two_gateway_instances_admit_a_partner_s_rate_once_not_once_each(
    suite: Suite, audit: AuditReader
) -> None:
    """Two more instances of the suite's gateway on its database, 4-second windows: a partner
    limited to 10 calls/s (40 per window) sends 120 calls spread over both within one
    window: 40 are admitted in all (per-instance limits would admit 80), the rest are
    RESOURCE_EXHAUSTED with RetryInfo up to the window's end."""
    window_s, rate = 4.0, 10.0
    settings = suite.gateway.gateway.settings.model_copy(
        update={"grpc_port": 0, "http_port": 0, "rate_limit_window_s": window_s}
    )
    partner = await suite.add_partner("limited-twice", ["loans:read"], rate=rate)
    async with running(settings) as one, running(settings) as two:
        clients = [
            PartnerClient.connect(
                f"127.0.0.1:{gw.port}",
                ca=suite.ca.cert_pem,
                cert=partner.cert,
                key=partner.key,
                credential=partner.credential,
                server_name="localhost",
            )
            for gw in (one, two)
        ]
        for zc in clients:  # connected (TLS done) before the window starts
            await zc.channel.channel_ready()
        limiters = [one.gateway.shared_limiter, two.gateway.shared_limiter]
        assert all(limiters)
        now = time.time()
        await asyncio.sleep((int(now / window_s) + 1) * window_s - now + 0.05)
        started = time.time()

        async def call(zc: PartnerClient) -> str:
            try:
                await zc.loans.ListLoanProducts(
                    loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata(), timeout=5
                )
                return "OK"
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                reason, _, retry = reason_and_retry(exc)
                assert reason == "RATE_LIMITED" and retry is not None and 0 < retry <= window_s
                return "LIMITED"

        outcomes = await asyncio.gather(*(call(clients[i % 2]) for i in range(120)))
        per_instance = [
            outcomes[i::2].count("OK") for i in range(2)
        ]  # calls i, i+2, ... went to instance i
        assert time.time() - started < window_s - 0.5, "the burst spilled into the next window"
        assert outcomes.count("OK") == int(rate * window_s), (per_instance, outcomes)
        assert all(n > 0 for n in per_instance), per_instance  # both admitted some
        # the window is full: more calls are refused by each instance without a database call
        writes = [lim.writes for lim in limiters if lim]
        more = await asyncio.gather(*(call(clients[i % 2]) for i in range(10)))
        assert more == ["LIMITED"] * 10
        assert [lim.writes for lim in limiters if lim] == writes
        # the next window admits again
        now = time.time()
        await asyncio.sleep((int(now / window_s) + 1) * window_s - now + 0.05)
        assert await call(clients[0]) == "OK" and await call(clients[1]) == "OK"
        for zc in clients:
            await zc.channel.close()
    await audit.find(
        partner_id="limited-twice", outcome="RESOURCE_EXHAUSTED", reason="RATE_LIMITED"
    )
