"""Scenario 8, API attacks (OWASP API Security Top 10 2023) through the gateway and the HTTP
services: one ``CHAOS-ROW`` per attack class, ``lost`` = attacks that succeeded.

    python -m tests.chaos.attacks [--quick]

In a world of two partners, each owning a verified customer, a loan and an employer with a paid
batch (``security_world``):

* ``bola-gateway`` (API1): partner B names partner A's party, application, loan, employer,
  batch and webhook endpoint on every RPC that takes one, with its own customer's token and
  with A's customer's (stolen) token: must be NOT_FOUND or PERMISSION_DENIED, never data.
* ``bola-http``: customer B's valid token on customer A's resources at identity, loan and
  payroll: must be 403 or 404.
* ``mass-assignment`` (API3): requests with fields the API does not take (a KYC level, an
  application state, a rate, a wallet balance): refused (422) or ignored, never applied.
* ``jwt`` (API2): ``alg: none``, another key under the real ``kid``, HS256 keyed with the public
  key, an expired token signed with the real key, a tampered subject, an AAL1 token on step-up
  routes, another party's valid token — at loan directly and through the gateway.
* ``idempotency-cross-partner``: partner B (and customer B at the service) replaying A's
  idempotency key with the same request must not get A's response.
* ``pii-scan`` (API3): every response body above, and every record on the world's topics, is
  searched for the test parties' resident ID, phone and card numbers in clear.
* ``tls``: TLS 1.0 and 1.1, and TLS 1.2 with only non-AEAD or non-forward-secret ciphers, with a
  valid partner certificate: the gateway must refuse the handshake.

Exit 1 when any attack succeeded (each named on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import text_format
from google.protobuf.timestamp_pb2 import Timestamp

from tests.chaos.security_world import World, engines_from_env, leaks, running_world
from tests.integration.test_identity_service import Person
from zerocontact.gateway.v1 import (
    identity_pb2,
    loan_pb2,
    payroll_pb2,
    signals_pb2,
    webhooks_pb2,
)
from zerocontact.partner_client import cny, new_key

SCENARIO = "attacks"
REFUSED_GRPC = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED}
AUTH_REFUSED_GRPC = REFUSED_GRPC | {grpc.StatusCode.UNAUTHENTICATED}


@dataclass
class Row:
    attack: str
    detail: str
    attempts: int = 0
    succeeded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def emit(self) -> None:
        text = f"{time.monotonic() - self.started:.0f} s; {self.detail}"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        if self.succeeded:
            text += "; SUCCEEDED: " + " | ".join(self.succeeded[:3])
        row = {
            "scenario": f"{SCENARIO}:{self.attack}",
            "faults": self.attempts,
            "operations": self.attempts,
            "lost": len(self.succeeded),
            "duplicated": 0,
            "recover_s": None,
            "detail": text[:400],
        }
        print("CHAOS-ROW " + json.dumps(row, ensure_ascii=False), flush=True)
        for s in self.succeeded:
            print(f"attack {self.attack} succeeded: {s}", file=sys.stderr)


@dataclass
class Bodies:
    """Every response seen, for the personal-data scan."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, body: Any) -> None:
        if isinstance(body, httpx.Response):
            self.texts.append((where, body.text))
        elif hasattr(body, "DESCRIPTOR"):
            self.texts.append((where, text_format.MessageToString(body, as_utf8=True)))
        else:
            self.texts.append((where, str(body)))


async def grpc_outcome(call: Awaitable[Any], bodies: Bodies, where: str) -> grpc.StatusCode:
    try:
        response = await call
    except grpc.aio.AioRpcError as err:
        bodies.add(where, f"{err.details()} {err.trailing_metadata()}")
        return err.code()
    bodies.add(where, response)
    return grpc.StatusCode.OK


async def stream_outcome(stream: Any, bodies: Bodies, where: str) -> grpc.StatusCode:
    try:
        async for message in stream:
            bodies.add(where, message)
            stream.cancel()
            return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


# -- API1: BOLA ------------------------------------------------------------------------------


async def bola_gateway(world: World, bodies: Bodies) -> Row:
    row = Row("bola-gateway", "partner B on partner A's objects, B's and A's customer tokens")
    a, b = world.holdings["shop-a"], world.holdings["bank-b"]
    async with world.client("shop-a") as za:
        endpoint = await za.webhooks.CreateWebhookEndpoint(
            webhooks_pb2.CreateWebhookEndpointRequest(
                url="https://partner-a.example/hooks", event_types=["*"]
            ),
            metadata=za.metadata(key=new_key()),
        )
    endpoint_id = endpoint.endpoint.endpoint_id
    month_start, month_end = Timestamp(), Timestamp()
    month_start.FromSeconds(int(time.time()) - 40 * 86400)
    month_end.FromSeconds(int(time.time()) - 10 * 86400)
    async with world.client("bank-b") as zb:
        for token_name, token, rep_token in (
            ("B's token", b.customer.token, b.representative.token),
            ("A's token", a.customer.token, a.representative.token),
        ):

            def md(tok: str = token, key: bool = False) -> Any:
                return zb.metadata(token=tok, key=new_key() if key else None)

            unary: list[tuple[str, Awaitable[Any]]] = [
                ("GetParty", zb.identity.GetParty(
                    identity_pb2.GetPartyRequest(party_id=a.customer.party_id), metadata=md())),
                ("GetParty(enterprise)", zb.identity.GetParty(
                    identity_pb2.GetPartyRequest(party_id=a.enterprise_id), metadata=md(rep_token))),
                ("VerifyCustomer", zb.identity.VerifyCustomer(
                    identity_pb2.VerifyCustomerRequest(party_id=a.customer.party_id),
                    metadata=md(key=True))),
                ("RegisterEnterprise(A's rep)", zb.identity.RegisterEnterprise(
                    identity_pb2.RegisterEnterpriseRequest(
                        name="Hijack Ltd", credit_code="91350100M000100Y43",
                        legal_representative_id=a.customer.party_id, business_category="F",
                        registered_capital=cny(100_000_000)),
                    metadata=md(key=True))),
                ("ApplyForLoan", zb.loans.ApplyForLoan(
                    loan_pb2.ApplyForLoanRequest(
                        party_id=a.customer.party_id, product_id="merchant-310",
                        amount=cny(1_000_000), term_months=12, purpose="inventory",
                        device_id=a.customer.device_id),
                    metadata=md(key=True))),
                ("GetLoanApplication", zb.loans.GetLoanApplication(
                    loan_pb2.GetLoanApplicationRequest(application_id=a.application_id),
                    metadata=md())),
                ("AcceptLoanOffer", zb.loans.AcceptLoanOffer(
                    loan_pb2.AcceptLoanOfferRequest(application_id=a.application_id),
                    metadata=md(key=True))),
                ("GetLoan", zb.loans.GetLoan(
                    loan_pb2.GetLoanRequest(loan_id=a.loan_id), metadata=md())),
                ("RepayLoan", zb.loans.RepayLoan(
                    loan_pb2.RepayLoanRequest(loan_id=a.loan_id, amount=cny(100)),
                    metadata=md(key=True))),
                ("ReportMerchantRevenue", zb.loans.ReportMerchantRevenue(
                    loan_pb2.ReportMerchantRevenueRequest(
                        report_id=f"r-{uuid.uuid4().hex[:12]}", party_id=a.customer.party_id,
                        revenue=cny(500_000), period_start=month_start, period_end=month_end),
                    metadata=md(key=True))),
                ("OnboardEmployer", zb.payroll.OnboardEmployer(
                    payroll_pb2.OnboardEmployerRequest(employer_id=a.enterprise_id),
                    metadata=md(rep_token, key=True))),
                ("TopUpWallet", zb.payroll.TopUpWallet(
                    payroll_pb2.TopUpWalletRequest(
                        employer_id=a.enterprise_id, rail_reference=f"IN-{uuid.uuid4().hex[:8]}",
                        amount=cny(100)),
                    metadata=md(rep_token, key=True))),
                ("SubmitPayrollBatch", zb.payroll.SubmitPayrollBatch(
                    payroll_pb2.SubmitPayrollBatchRequest(
                        employer_id=a.enterprise_id, item_count=1, control_sum=cny(100),
                        items=[payroll_pb2.PayrollItem(
                            payee_name="x", card_number=b.cards[0], amount=cny(100))]),
                    metadata=md(rep_token, key=True))),
                ("GetPayrollBatch", zb.payroll.GetPayrollBatch(
                    payroll_pb2.GetPayrollBatchRequest(batch_id=a.batch_id),
                    metadata=md(rep_token))),
                ("ApprovePayrollBatch", zb.payroll.ApprovePayrollBatch(
                    payroll_pb2.ApprovePayrollBatchRequest(batch_id=a.batch_id),
                    metadata=md(rep_token, key=True))),
                ("DeleteWebhookEndpoint", zb.webhooks.DeleteWebhookEndpoint(
                    webhooks_pb2.DeleteWebhookEndpointRequest(endpoint_id=endpoint_id),
                    metadata=md(key=True))),
                ("ListWebhookDeliveries", zb.webhooks.ListWebhookDeliveries(
                    webhooks_pb2.ListWebhookDeliveriesRequest(endpoint_id=endpoint_id),
                    metadata=md())),
                ("ReplayWebhooks", zb.webhooks.ReplayWebhooks(
                    webhooks_pb2.ReplayWebhooksRequest(endpoint_id=endpoint_id, event_ids=["e-1"]),
                    metadata=md(key=True))),
            ]  # fmt: skip
            for name, call in unary:
                row.attempts += 1
                code = await grpc_outcome(call, bodies, f"gateway {name} ({token_name})")
                if code not in REFUSED_GRPC:
                    row.succeeded.append(f"{name} with {token_name}: {code.name}")
            streams = [
                ("WatchLoanApplication", zb.loans.WatchLoanApplication(
                    loan_pb2.WatchLoanApplicationRequest(application_id=a.application_id),
                    metadata=md(), timeout=5)),
                ("WatchPayrollBatch", zb.payroll.WatchPayrollBatch(
                    payroll_pb2.WatchPayrollBatchRequest(batch_id=a.batch_id),
                    metadata=md(rep_token), timeout=5)),
                ("WatchRiskAlerts", zb.signals.WatchRiskAlerts(
                    signals_pb2.WatchRiskAlertsRequest(party_id=a.customer.party_id),
                    metadata=md(), timeout=5)),
            ]  # fmt: skip
            for name, stream in streams:
                row.attempts += 1
                code = await stream_outcome(stream, bodies, f"gateway {name} ({token_name})")
                if code not in REFUSED_GRPC:
                    row.succeeded.append(f"{name} with {token_name}: {code.name}")
        listed = await zb.webhooks.ListWebhookEndpoints(
            webhooks_pb2.ListWebhookEndpointsRequest(), metadata=zb.metadata()
        )
        row.attempts += 1
        if any(e.endpoint_id == endpoint_id for e in listed.endpoints):
            row.succeeded.append("ListWebhookEndpoints shows A's endpoint to B")
    return row


async def bola_http(world: World, bodies: Bodies) -> Row:
    row = Row("bola-http", "customer B's valid token on customer A's resources, each service")
    s = world.suite
    a, b = world.holdings["shop-a"], world.holdings["bank-b"]
    cust = {"Authorization": f"Bearer {b.customer.token}", "X-Device-Id": b.customer.device_id}
    rep = {"Authorization": f"Bearer {b.representative.token}"}
    key = {"Idempotency-Key": new_key()}
    attempts: list[tuple[str, httpx.AsyncClient, str, str, dict[str, str], Any]] = [
        ("identity", s.identity.client, "GET", f"/v1/customers/{a.customer.party_id}", cust, None),
        ("identity", s.identity.client, "GET", f"/v1/enterprises/{a.enterprise_id}", rep, None),
        ("identity", s.identity.client, "PUT", f"/v1/customers/{a.customer.party_id}/phone",
         cust, {"phone": Person().phone}),
        ("identity", s.identity.client, "POST",
         f"/v1/customers/{a.customer.party_id}/kyc/verification", cust, {}),
        ("identity", s.identity.client, "POST", f"/v1/customers/{a.customer.party_id}/factors/totp",
         cust, None),
        ("loan", s.loan.client, "GET", f"/v1/applications/{a.application_id}", cust, None),
        ("loan", s.loan.client, "POST", f"/v1/applications/{a.application_id}/acceptance", cust, None),
        ("loan", s.loan.client, "GET", f"/v1/loans/{a.loan_id}", cust, None),
        ("loan", s.loan.client, "GET", f"/v1/loans/{a.loan_id}/payoff", cust, None),
        ("loan", s.loan.client, "POST", f"/v1/loans/{a.loan_id}/repayments", cust,
         {"amount": "1.00", "currency": "CNY"}),
        ("payroll", s.payroll.client, "GET", f"/v1/employers/{a.enterprise_id}", rep, None),
        ("payroll", s.payroll.client, "POST", f"/v1/employers/{a.enterprise_id}/top-ups", rep,
         {"rail_reference": "IN-X-00001", "amount": "1.00"}),
        ("payroll", s.payroll.client, "POST", f"/v1/employers/{a.enterprise_id}/agents", rep,
         {"agent_id": b.representative.party_id}),
        ("payroll", s.payroll.client, "GET", f"/v1/batches/{a.batch_id}", rep, None),
        ("payroll", s.payroll.client, "GET", f"/v1/batches/{a.batch_id}/items", rep, None),
        ("payroll", s.payroll.client, "GET", f"/v1/batches/{a.batch_id}/report", rep, None),
        ("payroll", s.payroll.client, "GET", f"/v1/batches/{a.batch_id}/pain001", rep, None),
        ("payroll", s.payroll.client, "GET", f"/v1/batches/{a.batch_id}/status-report", rep, None),
        ("payroll", s.payroll.client, "POST", f"/v1/batches/{a.batch_id}/approval", rep, None),
    ]  # fmt: skip
    for service, client, method, path, headers, body in attempts:
        row.attempts += 1
        r = await client.request(method, path, headers={**headers, **key}, json=body)
        bodies.add(f"{service} {method} {path}", r)
        if r.status_code not in (403, 404):
            row.succeeded.append(f"{service} {method} {path.split('/')[2]}: {r.status_code}")
    return row


# -- API3: mass assignment -------------------------------------------------------------------


async def mass_assignment(world: World, bodies: Bodies) -> Row:
    row = Row("mass-assignment", "fields the API does not take: refused (422) or ignored")
    s = world.suite
    b = world.holdings["bank-b"]
    person = Person()
    world.secrets.update({person.rid, person.phone, person.phone.removeprefix("+86")})
    extra = {"kyc_level": "VERIFIED", "party_id": "forged-party", "status": "ACTIVE",
             "aal": "AAL3", "roles": ["operator"]}  # fmt: skip
    r = await s.identity.client.post(
        "/v1/customers", json={**person.body(), **extra}, headers={"Idempotency-Key": new_key()}
    )
    bodies.add("identity POST /v1/customers (extra fields)", r)
    row.attempts += 1
    if r.status_code == 201:
        party = r.json()
        if party.get("kyc_level") == "VERIFIED" or party.get("party_id") == "forged-party":
            row.succeeded.append(f"customer registered with {party.get('kyc_level')}")
    elif r.status_code != 422:
        row.succeeded.append(f"POST /v1/customers with extra fields: {r.status_code}")
    cust = {"Authorization": f"Bearer {b.customer.token}", "Idempotency-Key": new_key()}
    r = await s.loan.client.post(
        "/v1/applications",
        json={"party_id": b.customer.party_id, "product_id": "merchant-310",
              "amount": "5000.00", "currency": "CNY", "term_months": 6,
              "purpose": "inventory", "device_id": b.customer.device_id,
              "state": "APPROVED", "decision": "APPROVED", "annual_rate": "0.0001",
              "approved_amount": {"currency": "CNY", "amount": "999999.00"}, "loan_id": "x"},
        headers={**cust, "X-Device-Id": b.customer.device_id},
    )  # fmt: skip
    bodies.add("loan POST /v1/applications (extra fields)", r)
    row.attempts += 1
    if r.status_code in (200, 201, 202):
        app = r.json()
        text = json.dumps(app)
        if app.get("state") == "APPROVED" or "0.0001" in text or "999999" in text:
            row.succeeded.append(f"application created as {app.get('state')}")
    elif r.status_code not in (409, 422):
        row.notes.append(f"loan application with extra fields: {r.status_code}")
    rep = {"Authorization": f"Bearer {b.representative.token}"}
    before = await s.payroll.client.get(f"/v1/employers/{b.enterprise_id}", headers=rep)
    r = await s.payroll.client.post(
        f"/v1/employers/{b.enterprise_id}/top-ups",
        json={"rail_reference": f"IN-{uuid.uuid4().hex[:8]}",
              "amount": "1.00",
              "wallet": {"currency": "CNY", "amount": "99999999.00"}, "balance": 10**12,
              "employer_id": world.holdings["shop-a"].enterprise_id},
        headers={**rep, "Idempotency-Key": new_key()},
    )  # fmt: skip
    bodies.add("payroll top-up (extra fields)", r)
    after = await s.payroll.client.get(f"/v1/employers/{b.enterprise_id}", headers=rep)
    row.attempts += 1
    if r.status_code in (200, 201):
        if "99999999" in after.text or "1000000000000" in after.text:
            row.succeeded.append("top-up set the wallet balance")
        row.notes.append(
            f"top-up with extra fields accepted, wallet {_wallet(before)} → {_wallet(after)}"
        )
    elif r.status_code != 422:
        row.succeeded.append(f"top-up with extra fields: {r.status_code}")
    return row


def _wallet(r: httpx.Response) -> str:
    """The employer view's wallet fields, for the row's detail."""
    try:
        doc = r.json()
    except ValueError:
        return "?"
    return json.dumps({k: v for k, v in doc.items() if "wallet" in k}, ensure_ascii=False)


# -- API2: tokens ----------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    pad = lambda t: t + "=" * (-len(t) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(
        base64.urlsafe_b64decode(pad(body))
    )


def forged_tokens(world: World) -> dict[str, str]:
    a, b = world.holdings["shop-a"], world.holdings["bank-b"]
    header, claims = _parts(a.customer.token)
    kid = header["kid"]
    now = int(time.time())
    none = (
        f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': kid}).encode())}."
        + _b64(json.dumps(claims).encode())
        + "."
    )
    other = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )
    # algorithm confusion: HS256 keyed with the published key (PyJWT refuses to make it)
    hs_head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    hs_body = _b64(json.dumps(claims).encode())
    jwk = json.dumps(world.identity_keys.jwks()["keys"][0]).encode()
    mac = hmac.new(jwk, f"{hs_head}.{hs_body}".encode(), hashlib.sha256).digest()
    hs = f"{hs_head}.{hs_body}.{_b64(mac)}"
    expired = world.identity_keys.sign(
        {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
    )
    head, _, sig = a.customer.token.split(".")
    tampered = f"{head}.{_b64(json.dumps({**claims, 'sub': b.customer.party_id}).encode())}.{sig}"
    aal2_claim = jwt.encode(
        {**_parts(a.aal1_token)[1], "aal": "aal2"}, Ed25519PrivateKey.generate(),
        algorithm="EdDSA", headers={"kid": kid},
    )  # fmt: skip
    wrong_audience = world.identity_keys.sign({**claims, "aud": "another-service"})
    return {
        "alg none": none,
        "another key": other,
        "HS256 keyed with the JWK": hs,
        "expired (real key)": expired,
        "tampered subject": tampered,
        "forged aal2 claim": aal2_claim,
        "another audience (real key)": wrong_audience,
        "another party's token": b.customer.token,
    }


async def jwt_attacks(world: World, bodies: Bodies) -> Row:
    row = Row("jwt", "forged, expired, downgraded and foreign tokens at loan and the gateway")
    s = world.suite
    a = world.holdings["shop-a"]
    tokens = forged_tokens(world)
    async with world.client("shop-a") as za:
        for name, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}", "X-Device-Id": a.customer.device_id}
            r = await s.loan.client.get(f"/v1/applications/{a.application_id}", headers=headers)
            bodies.add(f"loan GET application ({name})", r)
            row.attempts += 1
            if r.status_code not in (401, 403, 404):
                row.succeeded.append(f"loan GET application with {name}: {r.status_code}")
            r = await s.payroll.client.get(
                f"/v1/employers/{a.enterprise_id}", headers={"Authorization": f"Bearer {token}"}
            )
            row.attempts += 1
            if r.status_code not in (401, 403, 404):
                row.succeeded.append(f"payroll GET employer with {name}: {r.status_code}")
            code = await grpc_outcome(
                za.loans.GetLoan(loan_pb2.GetLoanRequest(loan_id=a.loan_id),
                                 metadata=za.metadata(token=token)),
                bodies, f"gateway GetLoan ({name})",
            )  # fmt: skip
            row.attempts += 1
            if code not in AUTH_REFUSED_GRPC:
                row.succeeded.append(f"gateway GetLoan with {name}: {code.name}")
        # AAL downgrade: a real AAL1 token where step-up (AAL2) is required
        aal1 = {"Authorization": f"Bearer {a.aal1_token}", "X-Device-Id": a.customer.device_id}
        r = await s.loan.client.post(
            f"/v1/applications/{a.application_id}/acceptance",
            headers={**aal1, "Idempotency-Key": new_key()},
        )
        row.attempts += 1
        if r.status_code not in (401, 403):
            row.succeeded.append(f"loan acceptance with an AAL1 token: {r.status_code}")
        code = await grpc_outcome(
            za.loans.AcceptLoanOffer(
                loan_pb2.AcceptLoanOfferRequest(application_id=a.application_id),
                metadata=za.metadata(token=a.aal1_token, key=new_key()),
            ),
            bodies, "gateway AcceptLoanOffer (AAL1)",
        )  # fmt: skip
        row.attempts += 1
        if code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            row.succeeded.append(f"gateway AcceptLoanOffer with an AAL1 token: {code.name}")
    return row


# -- idempotency keys across partners --------------------------------------------------------


async def idempotency_cross_partner(world: World, bodies: Bodies) -> Row:
    row = Row("idempotency-cross-partner", "B replays A's idempotency key with A's request")
    s = world.suite
    a, b = world.holdings["shop-a"], world.holdings["bank-b"]
    person = Person()
    world.secrets.update({person.rid, person.phone, person.phone.removeprefix("+86")})
    request = identity_pb2.RegisterCustomerRequest(
        **person.body(date_of_birth=person.birth.isoformat())
    )
    key = new_key()
    async with world.client("shop-a") as za, world.client("bank-b") as zb:
        first = await za.identity.RegisterCustomer(request, metadata=za.metadata(key=key))
        call = zb.identity.RegisterCustomer(request, metadata=zb.metadata(key=key))
        row.attempts += 1
        try:
            second = await call
            replayed = dict(await call.trailing_metadata() or ()).get("idempotent-replayed")
            bodies.add("gateway RegisterCustomer (B, A's key)", second)
            if second.party.party_id == first.party.party_id or replayed:
                row.succeeded.append("RegisterCustomer: B got A's response")
        except grpc.aio.AioRpcError as err:
            row.notes.append(f"RegisterCustomer by B: {err.code().name}")
        # ApplyForLoan: A's request (A's party) replayed by B with A's key
        apply = loan_pb2.ApplyForLoanRequest(
            party_id=a.customer.party_id, product_id="merchant-310", amount=cny(1_000_000),
            term_months=12, purpose="inventory", device_id=a.customer.device_id,
        )  # fmt: skip
        key = new_key()
        mine = await grpc_outcome(
            za.loans.ApplyForLoan(apply, metadata=za.metadata(token=a.customer.token, key=key)),
            bodies, "gateway ApplyForLoan (A)",
        )  # fmt: skip
        row.attempts += 1
        code = await grpc_outcome(
            zb.loans.ApplyForLoan(apply, metadata=zb.metadata(token=a.customer.token, key=key)),
            bodies, "gateway ApplyForLoan (B, A's key)",
        )  # fmt: skip
        if code == grpc.StatusCode.OK:
            row.succeeded.append(f"ApplyForLoan: B got an application (A's call: {mine.name})")
    # at the service: customer B's token with customer A's key and request
    body = {
        "party_id": b.customer.party_id, "product_id": "merchant-310",
        "amount": "2000.00", "currency": "CNY", "term_months": 6,
        "purpose": "inventory", "device_id": b.customer.device_id,
    }  # fmt: skip
    key = new_key()
    first_r = await s.loan.client.post(
        "/v1/applications", json=body,
        headers={"Authorization": f"Bearer {b.customer.token}", "Idempotency-Key": key},
    )  # fmt: skip
    second_r = await s.loan.client.post(
        "/v1/applications", json=body,
        headers={"Authorization": f"Bearer {a.customer.token}", "Idempotency-Key": key},
    )  # fmt: skip
    bodies.add("loan POST application (A, B's key)", second_r)
    row.attempts += 1
    if (
        second_r.status_code < 300
        and first_r.status_code < 300
        and second_r.json().get("application_id") == first_r.json().get("application_id")
    ):
        row.succeeded.append("loan: customer A got customer B's application by B's key")
    return row


# -- TLS -------------------------------------------------------------------------------------

WEAK_CIPHERS = (
    "AES128-SHA:AES256-SHA:AES128-SHA256:AES128-GCM-SHA256:DES-CBC3-SHA:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0"
)


def _handshake(world: World, work: Path, version: ssl.TLSVersion, ciphers: str | None) -> str:
    partner = world.suite.partners["shop-a"]
    (work / "c.crt").write_bytes(partner.cert)
    (work / "c.key").write_bytes(partner.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=world.suite.ca.cert_pem.decode())
    ctx.load_cert_chain(work / "c.crt", work / "c.key")
    ctx.check_hostname = False
    ctx.minimum_version = version
    ctx.maximum_version = version
    ctx.set_ciphers(ciphers or "ALL:@SECLEVEL=0")
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", world.suite.gateway.port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return f"ACCEPTED {tls.version()} {tls.cipher()}"
        except (ssl.SSLError, OSError) as exc:
            return f"refused: {getattr(exc, 'reason', None) or type(exc).__name__}"


async def tls_attacks(world: World, _: Bodies) -> Row:
    row = Row("tls", "legacy protocol versions and weak cipher suites, valid client certificate")
    with tempfile.TemporaryDirectory() as tmp:
        trials = [
            ("TLS 1.0", ssl.TLSVersion["TLSv1"], None),  # deprecated names: by lookup
            ("TLS 1.1", ssl.TLSVersion["TLSv1_1"], None),
            ("TLS 1.2 weak ciphers", ssl.TLSVersion.TLSv1_2, WEAK_CIPHERS),
        ]
        for name, version, ciphers in trials:
            row.attempts += 1
            try:
                outcome = await asyncio.to_thread(_handshake, world, Path(tmp), version, ciphers)
            except ssl.SSLError as exc:  # this OpenSSL would not even offer it
                outcome = f"not offered by this client: {exc.reason}"
            row.notes.append(f"{name} {outcome}")
            if outcome.startswith("ACCEPTED"):
                row.succeeded.append(f"{name}: {outcome}")
    return row


# -- personal data ---------------------------------------------------------------------------


async def topic_texts(world: World) -> list[tuple[str, bytes]]:
    t = world.suite.topics
    names = [t.identity, t.notifications, t.loan, t.risk, t.payroll, t.audit]
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=world.suite.engines.kafka_bootstrap,
        auto_offset_reset="earliest", group_id=None,
    )  # fmt: skip
    await consumer.start()
    out: list[tuple[str, bytes]] = []
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                for r in records:
                    headers = b" ".join(v for _, v in r.headers or ())
                    out.append((tp.topic, (r.value or b"") + b" " + headers))
    finally:
        await consumer.stop()
    return out


async def pii_scan(world: World, bodies: Bodies) -> Row:
    row = Row("pii-scan", "resident ID, phone and card numbers in clear in responses and events")
    s = world.suite
    a = world.holdings["shop-a"]
    # the owners' own reads too: what a partner or customer legitimately sees must be masked
    async with world.client("shop-a") as za:
        for where, call in (
            ("GetParty", za.identity.GetParty(
                identity_pb2.GetPartyRequest(party_id=a.customer.party_id),
                metadata=za.metadata(token=a.customer.token))),
            ("GetLoan", za.loans.GetLoan(
                loan_pb2.GetLoanRequest(loan_id=a.loan_id),
                metadata=za.metadata(token=a.customer.token))),
            ("GetPayrollBatch", za.payroll.GetPayrollBatch(
                payroll_pb2.GetPayrollBatchRequest(batch_id=a.batch_id),
                metadata=za.metadata(token=a.representative.token))),
        ):  # fmt: skip
            await grpc_outcome(call, bodies, f"gateway {where} (owner)")
    cust = {"Authorization": f"Bearer {a.customer.token}"}
    rep = {"Authorization": f"Bearer {a.representative.token}"}
    for client, path, headers in (
        (s.identity.client, f"/v1/customers/{a.customer.party_id}", cust),
        (s.loan.client, f"/v1/applications/{a.application_id}", cust),
        (s.loan.client, f"/v1/loans/{a.loan_id}", cust),
        (s.payroll.client, f"/v1/employers/{a.enterprise_id}", rep),
        (s.payroll.client, f"/v1/batches/{a.batch_id}/items", rep),
        (s.payroll.client, f"/v1/batches/{a.batch_id}/status-report", rep),
        (s.payroll.client, f"/v1/batches/{a.batch_id}/pain001", rep),
    ):
        bodies.add(f"GET {path.split('/')[2]} (owner)", await client.get(path, headers=headers))
    for where, text in bodies.texts:
        row.attempts += 1
        found = leaks(text, world.secrets)
        if found:
            row.succeeded.append(f"{where}: {', '.join(found)}")
    for topic, raw in await topic_texts(world):
        row.attempts += 1
        found = leaks(raw.decode("utf-8", "replace"), world.secrets)
        if found:
            row.succeeded.append(f"{topic.rsplit('-', 1)[-1]} record: {', '.join(found)}")
    row.notes.append(f"{len(world.secrets)} personal numbers searched")
    return row


# -- main ------------------------------------------------------------------------------------

ATTACKS: list[Callable[[World, Bodies], Awaitable[Row]]] = [
    bola_gateway, bola_http, mass_assignment, jwt_attacks, idempotency_cross_partner,
    tls_attacks, pii_scan,
]  # fmt: skip


async def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    bodies = Bodies()
    with engines_from_env() as engines:
        async with running_world(engines) as world:
            for attack in ATTACKS:
                try:
                    row = await attack(world, bodies)
                except Exception as exc:  # an attack that breaks the harness is a finding too
                    row = Row(attack.__name__.replace("_", "-"), "the attack itself failed")
                    row.attempts += 1
                    row.succeeded.append(f"{type(exc).__name__}: {exc}"[:200])
                row.emit()
                rows.append(row)
    return rows


def quiet_services() -> None:
    """The services run in this process: their JSON logs would share the rows' stdout."""
    for service in ("IDENTITY", "LOAN", "PAYROLL", "MARKETING", "GATEWAY", "SIGNALS"):
        os.environ.setdefault(f"ZC_{service}_LOG_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> int:
    quiet_services()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same attacks (they are few)")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.quick))
    failed = [r.attack for r in rows if r.succeeded]
    if failed:
        print(f"attacks: succeeded in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
