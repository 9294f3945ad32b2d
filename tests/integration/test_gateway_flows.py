"""The partner gateway end to end: real gRPC over mTLS in front of the real identity, loan and
payroll services and the real signals worker, on the real Kafka broker and FerretDB.

One suite (services, worker, gateway) per module; every test registers its own parties.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from google.protobuf.timestamp_pb2 import Timestamp
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines
from tests.integration.test_gateway_support import (
    ALL_SCOPES,
    AuditReader,
    Suite,
    register_customer,
    start_suite,
)
from tests.integration.test_topics_tail import tail_json
from zerocontact.gateway import convert
from zerocontact.gateway.v1 import identity_pb2, loan_pb2, loan_pb2_grpc
from zerocontact.partner_client import cny, error_details
from zerocontact.platform.redact import personal_fields
from zerocontact.platform.topics import message_class

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]
GRPCURL = ROOT / ".cache/tools/bin/grpcurl"  # deploy/tools/install.sh puts it there
GHZ = ROOT / ".cache/tools/bin/ghz"  # and ghz


@pytest.fixture(scope="module")
async def suite(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    async with AsyncExitStack() as stack:
        s = await start_suite(
            engines, kafka_admin, mongo_client, tmp_path_factory.mktemp("gateway"), stack
        )
        await s.add_partner("shop-a", ALL_SCOPES)
        await s.add_partner("bank-b", ALL_SCOPES)
        yield s


@pytest.fixture(scope="module")
async def audit(suite: Suite) -> AsyncIterator[AuditReader]:
    reader = AuditReader(suite.engines.kafka_bootstrap, suite.topics.audit)
    await reader.start()
    yield reader
    await reader.stop()


def apply_request(
    party_id: str, device: str, amount_minor: int = 3_000_000
) -> loan_pb2.ApplyForLoanRequest:
    return loan_pb2.ApplyForLoanRequest(
        party_id=party_id, product_id="merchant-310", amount=cny(amount_minor), term_months=12,
        purpose="inventory", device_id=device,
    )  # fmt: skip


async def test_the_310_journey_through_the_gateway(suite: Suite, audit: AuditReader) -> None:
    async with suite.client("shop-a") as zc:
        products = await zc.list_loan_products()
        assert "merchant-310" in {p.product_id for p in products}
        customer = await register_customer(suite, zc)
        token = customer.token
        # At once, no retry loop: loan waits for identity's events about the party.
        application = await zc.apply_for_loan(
            apply_request(customer.party_id, customer.device_id), token=token
        )
        assert application.state == "AWAITING_RISK"
        assert application.lifecycle_state == loan_pb2.LOAN_APPLICATION_STATE_AWAITING_RISK
        updates = []
        accepted_loan = None
        async for update in zc.watch_loan_application(
            application.application_id, token=token, timeout_s=60
        ):
            updates.append(update)
            if update.application.state == "APPROVED" and accepted_loan is None:
                accepted_loan = await zc.accept_loan_offer(application.application_id, token=token)
            if update.terminal:
                break
        states = [
            (u.application.state, u.loan.state if u.HasField("loan") else "") for u in updates
        ]
        assert states[0][0] == "AWAITING_RISK", states
        assert ("APPROVED", "") in states, states
        assert updates[-1].terminal and updates[-1].loan.state == "DISBURSED", states
        # the enum states say the same as the text on every update, folded ones included
        for u in updates:
            assert loan_pb2.LoanApplicationState.Name(u.application.lifecycle_state) == (
                f"LOAN_APPLICATION_STATE_{u.application.state}"
            )
            if u.HasField("loan"):
                assert u.loan.lifecycle_state == convert.loan_state(u.loan.state) != 0
        assert accepted_loan is not None
        assert updates[-1].loan.loan_id == accepted_loan.loan_id
        loan = await zc.get_loan(accepted_loan.loan_id, token=token)
        assert loan.state == "DISBURSED" and loan.principal.minor_units == 3_000_000
        assert loan.lifecycle_state == loan_pb2.LOAN_STATE_DISBURSED
        assert len(loan.schedule) == 12
        suite.shared["loan"] = (loan.loan_id, token, customer)
    record = await audit.find(
        partner_id="shop-a", method="/zerocontact.gateway.v1.LoanService/AcceptLoanOffer"
    )
    assert record.outcome == "OK" and record.latency_us > 0


def _info(error: grpc.aio.AioRpcError) -> tuple[str, list[tuple[str, str]], float | None]:
    """(ErrorInfo.reason, BadRequest violations, RetryInfo seconds) of a refused call."""
    from google.rpc import error_details_pb2

    reason, violations, retry = "", [], None
    for d in error_details(error):
        if isinstance(d, error_details_pb2.ErrorInfo):
            reason = d.reason
        elif isinstance(d, error_details_pb2.BadRequest):
            violations = [(v.field, v.description) for v in d.field_violations]
        elif isinstance(d, error_details_pb2.RetryInfo):
            retry = d.retry_delay.ToNanoseconds() / 1e9
    return reason, violations, retry


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_partner_b_cannot_see_or_touch_partner_a_s_loan(
    suite: Suite, audit: AuditReader
) -> None:
    loan_id, token, customer = suite.shared["loan"]
    async with suite.client("bank-b") as b:
        # even with the borrower's own valid token, B is not the loan's partner
        err = await _refused(
            b.loans.GetLoan(
                loan_pb2.GetLoanRequest(loan_id=loan_id), metadata=b.metadata(token=token)
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert _info(err)[0] == "LOAN_NOT_FOUND"
        err = await _refused(
            b.loans.RepayLoan(
                loan_pb2.RepayLoanRequest(loan_id=loan_id, amount=cny(100)),
                metadata=b.metadata(token=token, key=uuid.uuid4().hex),
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND
        err = await _refused(
            b.loans.ApplyForLoan(
                apply_request(customer.party_id, customer.device_id),
                metadata=b.metadata(token=token, key=uuid.uuid4().hex),
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND and _info(err)[0] == "PARTY_NOT_FOUND"
    record = await audit.find(
        partner_id="bank-b", method="/zerocontact.gateway.v1.LoanService/GetLoan"
    )
    assert record.outcome == "NOT_FOUND" and record.reason == "LOAN_NOT_FOUND"
    # the audit trail holds no personal data: no token, no phone, no name
    assert all(token.encode() not in raw and customer.person.phone.encode() not in raw
               for raw in audit.raw)  # fmt: skip


async def test_refused_partners_wrong_credential_missing_scope(
    suite: Suite, audit: AuditReader
) -> None:
    await suite.add_partner("reader-d", ["loans:read"])
    # a credential that is not the certificate's partner's (bank-b's, presented by shop-a)
    async with suite.client("shop-a", credential=suite.partners["bank-b"].credential) as zc:
        err = await _refused(
            zc.loans.ListLoanProducts(loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata())
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _info(err)[0] == "INVALID_PARTNER_CREDENTIAL"
    async with suite.client("shop-a", credential="") as zc:
        err = await _refused(
            zc.loans.ListLoanProducts(loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata())
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    await audit.find(
        partner_id="shop-a", outcome="UNAUTHENTICATED", reason="INVALID_PARTNER_CREDENTIAL"
    )
    async with suite.client("reader-d") as zc:
        assert await zc.list_loan_products()
        err = await _refused(
            zc.loans.ApplyForLoan(
                apply_request(str(uuid.uuid4()), "dev-1"),
                metadata=zc.metadata(key=uuid.uuid4().hex),
            )
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert _info(err)[0] == "MISSING_SCOPE"
    await audit.find(partner_id="reader-d", outcome="PERMISSION_DENIED", reason="MISSING_SCOPE")


async def test_a_deactivated_partner_is_refused_and_audited(
    suite: Suite, audit: AuditReader
) -> None:
    await suite.add_partner("gone-e", ["loans:read"])
    async with suite.client("gone-e") as zc:
        assert await zc.list_loan_products()
        assert await suite.gateway.gateway.partners.deactivate("gone-e")
        err = await _refused(
            zc.loans.ListLoanProducts(loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata())
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _info(err)[0] == "INVALID_PARTNER_CREDENTIAL"  # one answer, nothing to probe
    await audit.find(
        partner_id="gone-e", outcome="UNAUTHENTICATED", reason="INVALID_PARTNER_CREDENTIAL"
    )
    assert not await suite.gateway.gateway.partners.deactivate("never-registered")


async def test_no_client_certificate_or_an_untrusted_ca_is_refused_at_the_handshake(
    suite: Suite,
) -> None:
    from zerocontact.gateway import certs

    request = loan_pb2.ListLoanProductsRequest()
    md = (("x-partner-credential", suite.partners["shop-a"].credential),)
    options = [("grpc.ssl_target_name_override", "localhost")]
    no_cert = grpc.ssl_channel_credentials(suite.ca.cert_pem)
    async with grpc.aio.secure_channel(suite.target, no_cert, options=options) as channel:
        stub = loan_pb2_grpc.LoanServiceStub(channel)
        err = await _refused(stub.ListLoanProducts(request, metadata=md, timeout=5))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    rogue_ca = certs.issue_ca("rogue CA")
    rogue = certs.issue_partner(rogue_ca, "shop-a")  # claims to be shop-a
    creds = grpc.ssl_channel_credentials(suite.ca.cert_pem, rogue.key_pem, rogue.cert_pem)
    async with grpc.aio.secure_channel(suite.target, creds, options=options) as channel:
        stub = loan_pb2_grpc.LoanServiceStub(channel)
        err = await _refused(stub.ListLoanProducts(request, metadata=md, timeout=5))
        assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_rate_limit_returns_resource_exhausted_with_retry_info(
    suite: Suite, audit: AuditReader
) -> None:
    await suite.add_partner("slow-c", ["loans:read"], rate=3)
    async with suite.client("slow-c") as zc:
        results = await asyncio.gather(
            *(
                zc.loans.ListLoanProducts(
                    loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata()
                )
                for _ in range(8)
            ),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert 0 < len(refused) <= 5, results
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
        reason, _, retry = _info(refused[0])
        assert reason == "RATE_LIMITED" and retry is not None and retry > 0
        await asyncio.sleep(1.2)
        assert await zc.list_loan_products()  # the bucket drained
    await audit.find(partner_id="slow-c", outcome="RESOURCE_EXHAUSTED")


async def test_idempotency_replay_mismatch_and_in_flight(suite: Suite) -> None:
    _, token, customer = suite.shared["loan"]
    async with suite.client("shop-a") as zc:
        key = uuid.uuid4().hex
        request = apply_request(customer.party_id, customer.device_id, amount_minor=200_000)
        first = zc.loans.ApplyForLoan(request, metadata=zc.metadata(token=token, key=key))
        again = zc.loans.ApplyForLoan(request, metadata=zc.metadata(token=token, key=key))
        results = await asyncio.gather(first, again, return_exceptions=True)
        ok = [r for r in results if isinstance(r, loan_pb2.ApplyForLoanResponse)]
        busy = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(ok) == 1 and len(busy) == 1, results
        assert busy[0].code() == grpc.StatusCode.ABORTED
        assert _info(busy[0])[0] == "REQUEST_IN_PROGRESS" and _info(busy[0])[2]
        # the same key and request: the first response, byte for byte
        call = zc.loans.ApplyForLoan(request, metadata=zc.metadata(token=token, key=key))
        replay = await call
        assert replay.SerializeToString() == ok[0].SerializeToString()
        assert ("idempotent-replayed", "true") in tuple(await call.trailing_metadata())
        # the same key with another request
        other = apply_request(customer.party_id, customer.device_id, amount_minor=300_000)
        err = await _refused(
            zc.loans.ApplyForLoan(other, metadata=zc.metadata(token=token, key=key))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        reason, violations, _ = _info(err)
        assert reason == "IDEMPOTENCY_KEY_REUSED" and violations[0][0] == "idempotency-key"
        # no key at all on a mutating call
        err = await _refused(zc.loans.ApplyForLoan(request, metadata=zc.metadata(token=token)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _info(err)[1][0][0] == "idempotency-key"
        # kept for at least 24 hours: the stored record's age bound
        assert suite.gateway.gateway.settings.idempotency_ttl_s >= 24 * 3600


async def test_malformed_requests_name_the_field(suite: Suite) -> None:
    _, token, customer = suite.shared["loan"]
    async with suite.client("shop-a") as zc:
        bad = loan_pb2.ApplyForLoanRequest(
            party_id="not-a-uuid", product_id="merchant-310", amount=cny(-5), term_months=0,
            purpose="x", device_id="d",
        )  # fmt: skip
        err = await _refused(
            zc.loans.ApplyForLoan(bad, metadata=zc.metadata(token=token, key=uuid.uuid4().hex))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = {f for f, _ in _info(err)[1]}
        assert {"party_id", "term_months"} <= fields, fields
        assert "party_id" in (err.details() or "")
        err = await _refused(
            zc.loans.ApplyForLoan(
                apply_request(customer.party_id, customer.device_id, amount_minor=-1),
                metadata=zc.metadata(token=token, key=uuid.uuid4().hex),
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _info(err)[1][0][0] == "amount.minor_units"
        # a field only the service can judge: its 422 mapped to the request's field name
        service_bad = apply_request(customer.party_id, customer.device_id)
        service_bad.purpose = "p" * 300
        err = await _refused(
            zc.loans.ApplyForLoan(
                service_bad, metadata=zc.metadata(token=token, key=uuid.uuid4().hex)
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "purpose" in {f for f, _ in _info(err)[1]}, _info(err)
        err = await _refused(
            zc.loans.GetLoan(loan_pb2.GetLoanRequest(loan_id=""), metadata=zc.metadata(token=token))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _info(err)[1][0][0] == "loan_id"
        # an oversized request is refused by the server before it reaches a handler
        huge = loan_pb2.ApplyForLoanRequest(purpose="x" * (5 * 1024 * 1024))
        err = await _refused(
            zc.loans.ApplyForLoan(huge, metadata=zc.metadata(token=token, key=uuid.uuid4().hex))
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_generated_requests_that_failed_inside_the_gateway_name_their_field(
    suite: Suite,
) -> None:
    """Found by tests/chaos/fuzz.py once its generated requests really reached the gateway:
    each of these answered INTERNAL (a control character in the device id reached aiohttp's
    header check; a Timestamp outside its range). The webhook ones are in
    test_gateway_notifications.py."""
    async with suite.client("shop-a") as zc:
        calls = {
            "device_id": zc.identity.StartAuthentication(
                identity_pb2.StartAuthenticationRequest(
                    phone="+8613800000000", password="secret-pass", device_id="dev\r\nX-Evil: 1"
                ),
                metadata=zc.metadata(),
            ),
            "period_end": zc.loans.ReportMerchantRevenue(
                loan_pb2.ReportMerchantRevenueRequest(
                    report_id="r-1",
                    party_id=str(uuid.uuid4()),
                    period_start=Timestamp(seconds=0),
                    period_end=Timestamp(seconds=10**12),  # past year 9999
                ),
                metadata=zc.metadata(key=uuid.uuid4().hex),
            ),
        }
        for field_name, call in calls.items():
            err = await _refused(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field_name, err)
            assert field_name in {f for f, _ in _info(err)[1]}, (field_name, _info(err))


async def test_payroll_journey_with_watch(suite: Suite) -> None:
    from tests.integration.test_gateway_support import credit_code
    from tests.integration.test_payroll_flow import cards
    from zerocontact.gateway.v1 import identity_pb2, payroll_pb2

    async with suite.client("shop-a") as zc:
        rep = await register_customer(suite, zc)
        enterprise = await zc.register_enterprise(
            identity_pb2.RegisterEnterpriseRequest(
                name="Gateway Payroll Ltd", credit_code=credit_code(),
                legal_representative_id=rep.party_id, business_category="F",
                registered_capital=cny(100_000_000),
            ),
            token=rep.token,
        )  # fmt: skip
        assert enterprise.kyc_level == identity_pb2.KYC_LEVEL_VERIFIED
        employer_id = enterprise.party_id
        # At once, no retry loop: payroll waits for identity's events about the enterprise.
        onboarded = await zc.payroll.OnboardEmployer(
            payroll_pb2.OnboardEmployerRequest(employer_id=employer_id),
            metadata=zc.metadata(token=rep.token, key=uuid.uuid4().hex),
            timeout=zc.timeout_s,
        )
        assert onboarded.employer.employer_id == employer_id
        topped = await zc.payroll.TopUpWallet(
            payroll_pb2.TopUpWalletRequest(
                employer_id=employer_id, rail_reference="IN-GW-0001", amount=cny(1_000_000)
            ),
            metadata=zc.metadata(token=rep.token, key=uuid.uuid4().hex),
        )
        assert topped.employer.wallet.minor_units == 1_000_000
        items = [
            payroll_pb2.PayrollItem(payee_name=f"员工{i}", card_number=c, amount=cny(100_000))
            for i, c in enumerate(cards(5, seed=11))
        ]
        submitted = await zc.payroll.SubmitPayrollBatch(
            payroll_pb2.SubmitPayrollBatchRequest(
                employer_id=employer_id, items=items, item_count=5, control_sum=cny(500_000)
            ),
            metadata=zc.metadata(token=rep.token, key=uuid.uuid4().hex),
        )
        batch_id = submitted.batch.batch_id
        assert submitted.batch.state == "SUBMITTED"
        progress: list[payroll_pb2.WatchPayrollBatchResponse] = []

        async def watch() -> None:
            async for update in zc.watch_payroll_batch(batch_id, token=rep.token, timeout_s=60):
                progress.append(update)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        approved = await zc.payroll.ApprovePayrollBatch(
            payroll_pb2.ApprovePayrollBatchRequest(batch_id=batch_id),
            metadata=zc.metadata(token=rep.token, key=uuid.uuid4().hex),
        )
        assert approved.batch.state in ("APPROVED", "EXECUTING", "COMPLETED")
        await asyncio.wait_for(watcher, 60)
        assert progress[0].batch.state == "SUBMITTED" and progress[0].event == ""
        assert progress[-1].terminal and progress[-1].batch.state == "COMPLETED"
        assert progress[-1].batch.lifecycle_state == payroll_pb2.PAYROLL_BATCH_STATE_COMPLETED
        assert progress[-1].batch.paid_items == 5 and progress[-1].batch.status == "ACSC"
        assert len(progress) >= 2
    # partner B cannot read A's batch
    async with suite.client("bank-b") as b:
        err = await _refused(
            b.payroll.GetPayrollBatch(
                payroll_pb2.GetPayrollBatchRequest(batch_id=batch_id),
                metadata=b.metadata(token=rep.token),
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND


def go_tool(suite: Suite, path: Path) -> str:
    """The tool deploy/tools/install.sh installed (else one on PATH; else skip), with
    shop-a's certificate and key written beside the CA for it."""
    found = str(path) if path.exists() else shutil.which(path.name)
    if not found:
        pytest.skip(f"{path.name} is not installed: run deploy/tools/install.sh (CI does)")
    partner = suite.partners["shop-a"]
    (suite.certs_dir / "shop-a.crt").write_bytes(partner.cert)
    (suite.certs_dir / "shop-a.key").write_bytes(partner.key)
    return found


async def test_grpcurl_lists_and_calls_through_reflection(suite: Suite) -> None:
    """grpcurl (deploy/tools/install.sh puts it in .cache/tools/bin) needs no .proto files."""
    found = go_tool(suite, GRPCURL)
    partner = suite.partners["shop-a"]
    tls = [
        "-cacert", str(suite.certs_dir / "ca.crt"), "-cert", str(suite.certs_dir / "shop-a.crt"),
        "-key", str(suite.certs_dir / "shop-a.key"), "-servername", "localhost",
    ]  # fmt: skip

    async def run(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            found, *tls, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        return out.decode()

    listed = await run(suite.target, "list")
    for service in ("zerocontact.gateway.v1.LoanService", "zerocontact.gateway.v1.IdentityService",
                    "zerocontact.gateway.v1.PayrollService", "zerocontact.gateway.v1.SignalService",
                    "grpc.health.v1.Health"):  # fmt: skip
        assert service in listed, listed
    products = await run(
        "-H", f"x-partner-credential: {partner.credential}", "-d", "{}", suite.target,
        "zerocontact.gateway.v1.LoanService/ListLoanProducts",
    )  # fmt: skip
    assert "merchant-310" in products
    health = await run(suite.target, "grpc.health.v1.Health/Check")
    assert "SERVING" in health


async def test_ghz_calls_through_reflection(suite: Suite) -> None:
    """ghz resolves a method symbol through reflection and calls it over mTLS, no .proto."""
    found = go_tool(suite, GHZ)
    partner = suite.partners["shop-a"]
    process = await asyncio.create_subprocess_exec(
        found, "--cacert", str(suite.certs_dir / "ca.crt"),
        "--cert", str(suite.certs_dir / "shop-a.crt"), "--key", str(suite.certs_dir / "shop-a.key"),
        "--cname", "localhost", "--call", "zerocontact.gateway.v1.LoanService/ListLoanProducts",
        "--metadata", json.dumps({"x-partner-credential": partner.credential}), "-d", "{}",
        "-n", "20", "-c", "2", "-O", "json", suite.target,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["statusCodeDistribution"] == {"OK": 20}, report.get("errorDistribution")


async def test_the_example_partner_script_runs_the_310_journey(suite: Suite) -> None:
    partner = await suite.add_partner("example-e", ALL_SCOPES)
    (suite.certs_dir / "example-e.crt").write_bytes(partner.cert)
    (suite.certs_dir / "example-e.key").write_bytes(partner.key)
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples/partner_310.py"), "--target", suite.target,
        "--ca", str(suite.certs_dir / "ca.crt"), "--cert", str(suite.certs_dir / "example-e.crt"),
        "--key", str(suite.certs_dir / "example-e.key"), "--credential", partner.credential,
        "--server-name", "localhost", "--identity-url", suite.identity.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode()
    assert "disbursed" in out.decode()


async def test_risk_alerts_reach_only_the_partner_that_owns_the_party(suite: Suite) -> None:
    """Three of shop-a's customers apply from one device: the signals app raises a
    DEVICE_SHARED alert about the third; shop-a's watch gets it, bank-b's does not."""
    from tests.integration.test_identity_service import PASSWORD, Person
    from zerocontact.gateway.v1 import identity_pb2, signals_pb2

    device = f"shared-{uuid.uuid4().hex[:8]}"
    async with suite.client("shop-a") as a, suite.client("bank-b") as b:
        seen_a: list[signals_pb2.WatchRiskAlertsResponse] = []
        seen_b: list[signals_pb2.WatchRiskAlertsResponse] = []

        async def follow(zc: Any, into: list[Any]) -> None:
            async for alert in zc.watch_risk_alerts(timeout_s=90):
                into.append(alert)

        watchers = [asyncio.create_task(follow(a, seen_a)), asyncio.create_task(follow(b, seen_b))]
        await asyncio.sleep(0.5)  # the streams are open
        parties = []
        for _ in range(3):
            person = Person()
            party = await a.register_customer(
                identity_pb2.RegisterCustomerRequest(
                    **person.body(date_of_birth=person.birth.isoformat())
                )
            )
            started = await a.start_authentication(person.phone, PASSWORD, device_id=device)
            request = loan_pb2.ApplyForLoanRequest(
                party_id=party.party_id, product_id="own-interest-first", amount=cny(100_000),
                term_months=6, purpose="stock", device_id=device,
            )  # fmt: skip
            await a.apply_for_loan(request, token=started.access_token)
            parties.append(party.party_id)
        for _ in range(600):
            if seen_a:
                break
            await asyncio.sleep(0.1)
        assert seen_a, "no alert reached the owning partner"
        assert seen_a[0].party_id in parties
        assert seen_a[0].kind == "RISK_ALERT_KIND_DEVICE_SHARED"
        await asyncio.sleep(1.0)
        assert not [x for x in seen_b if x.party_id in parties]  # never another partner's
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def test_reads_repayment_and_revenue_report_of_the_partner_s_own(suite: Suite) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from zerocontact.gateway.v1 import identity_pb2

    loan_id, token, customer = suite.shared["loan"]
    async with suite.client("shop-a") as zc:
        got = await zc.identity.GetParty(
            identity_pb2.GetPartyRequest(party_id=customer.party_id),
            metadata=zc.metadata(token=token),
        )
        assert got.party.kyc_level == identity_pb2.KYC_LEVEL_VERIFIED
        assert customer.person.phone not in str(got.party)  # masked
        loan = await zc.get_loan(loan_id, token=token)
        application = await zc.loans.GetLoanApplication(
            loan_pb2.GetLoanApplicationRequest(application_id=loan.application_id),
            metadata=zc.metadata(token=token),
        )
        assert application.application.state == "ACCEPTED"
        assert application.application.loan_id == loan_id
        repaid = await zc.loans.RepayLoan(
            loan_pb2.RepayLoanRequest(loan_id=loan_id, amount=cny(10_000)),
            metadata=zc.metadata(token=token, key=uuid.uuid4().hex),
        )
        assert repaid.principal.minor_units + repaid.interest.minor_units == 10_000
        assert repaid.loan_state == "DISBURSED"
        assert repaid.loan_lifecycle_state == loan_pb2.LOAN_STATE_DISBURSED
        start, end = Timestamp(), Timestamp()
        start.FromSeconds(int(time.time()) - 30 * 86400)
        end.FromSeconds(int(time.time()))
        report = loan_pb2.ReportMerchantRevenueRequest(
            report_id=f"r-{uuid.uuid4().hex[:12]}", party_id=customer.party_id,
            revenue=cny(12_345_600), period_start=start, period_end=end,
        )  # fmt: skip
        first = await zc.loans.ReportMerchantRevenue(
            report, metadata=zc.metadata(key=uuid.uuid4().hex)
        )
        assert first.report_id == report.report_id and not first.duplicate
        again = await zc.loans.ReportMerchantRevenue(
            report, metadata=zc.metadata(key=uuid.uuid4().hex)
        )
        assert again.duplicate  # the loan service's own idempotency by (platform, report id)
        backwards = loan_pb2.ReportMerchantRevenueRequest()
        backwards.CopyFrom(report)
        backwards.period_end.CopyFrom(start)
        err = await _refused(
            zc.loans.ReportMerchantRevenue(backwards, metadata=zc.metadata(key=uuid.uuid4().hex))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _info(err)[1][0][0] == "period_end"


def _paid(loan: loan_pb2.Loan) -> int:
    return sum(i.paid_principal.minor_units + i.paid_interest.minor_units for i in loan.schedule)


async def test_get_loan_from_the_read_model_sees_the_partner_s_own_repayment_at_once(
    suite: Suite,
) -> None:
    loan_id, token, _ = suite.shared["loan"]
    views = suite.gateway.gateway.views
    async with suite.client("shop-a") as zc:
        for _ in range(50):  # an earlier test's repayment event may still drop the view
            before = await zc.get_loan(loan_id, token=token)
            hits = views.hits
            again = await zc.get_loan(loan_id, token=token)
            if views.hits == hits + 1:  # answered by the gateway, no loan service call
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the second read never came from the read model")
        assert again == before
        await zc.loans.RepayLoan(
            loan_pb2.RepayLoanRequest(loan_id=loan_id, amount=cny(10_000)),
            metadata=zc.metadata(token=token, key=uuid.uuid4().hex),
        )
        # read-your-writes: the very next read has the repayment, no waiting for its event
        after = await zc.get_loan(loan_id, token=token)
        assert _paid(after) == _paid(before) + 10_000
        # a held view goes only to the borrower's own token: another person's is refused
        other = await register_customer(suite, zc, verify=False)
        await zc.get_loan(loan_id, token=token)  # held again
        err = await _refused(
            zc.loans.GetLoan(
                loan_pb2.GetLoanRequest(loan_id=loan_id),
                metadata=zc.metadata(token=await other.aal2(zc)),
            )
        )
        assert err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)


def _personal_values(event: Any, path: list[str]) -> list[Any]:
    """The values at a dotted path of a decoded event (through lists), none when unset."""
    if isinstance(event, list):
        return [v for item in event for v in _personal_values(item, path)]
    if not isinstance(event, dict) or path[0] not in event:
        return []
    value = event[path[0]]
    if len(path) == 1:
        return value if isinstance(value, list) else [value]
    return _personal_values(value, path[1:])


async def test_topics_tail_decodes_every_topic_the_journeys_wrote(suite: Suite) -> None:
    """`zerocontact topics tail` decodes every record of every topic the tests above filled,
    as their catalog rows, with every personal field masked. Runs after the 310 journey."""
    assert "loan" in suite.shared, "needs test_the_310_journey_through_the_gateway to run first"
    _, _, customer = suite.shared["loan"]
    t = suite.topics
    with_dlq = {
        t.identity: "identity.events.v1",
        t.notifications: "identity.notifications.v1",
        t.loan: "loan.events.v1",
        t.risk: "signals.risk.v1",
        t.payroll: "payroll.events.v1",
    }
    rows = {
        **with_dlq,
        **{f"{topic}.dlq": f"{row}.dlq" for topic, row in with_dlq.items()},
        t.audit: "gateway.audit.v1",
        f"{t.risk}-marketing": "marketing.events.v1",
        f"{t.risk}-engagement": "signals.engagement.v1",
    }
    outputs = await asyncio.gather(
        *(
            tail_json(suite.engines, topic, "--decode-as", row, "--from-beginning")
            for topic, row in rows.items()
        )
    )
    lines = [line for output in outputs for line in output]
    undecoded = [(line["topic"], line["offset"], line["error"]) for line in lines if line["error"]]
    assert not undecoded
    per_topic = {topic: len(output) for topic, output in zip(rows, outputs, strict=True)}
    assert all(per_topic[topic] for topic in (t.identity, t.loan, t.risk, t.audit)), per_topic
    types = {line["type"] for line in lines}
    assert {
        "zerocontact.identity.v1.CustomerRegistered",
        "zerocontact.loan.v1.LoanApplicationSubmitted",
        "zerocontact.loan.v1.LoanDisbursed",
        "zerocontact.gateway.v1.GatewayCallAudited",
    } <= types, types
    masked = 0
    for line in lines:
        for path in personal_fields(message_class(line["type"])):
            for value in _personal_values(line["event"], path.split(".")):
                assert str(value).startswith("***"), (line["type"], path, value)
                masked += 1
    assert masked >= 2  # at least the customer's resident ID and phone
    person = customer.person
    shown = json.dumps(lines, ensure_ascii=False)
    assert person.name not in shown and person.rid not in shown and person.phone not in shown
