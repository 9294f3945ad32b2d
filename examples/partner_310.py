"""An example partner: the 310 journey end to end through the gateway.

A merchant platform registers its merchant (a customer), the customer enrols an authenticator
app with identity (the customer's own app does this, never the partner) and authenticates
through the gateway with two factors, becomes KYC VERIFIED, applies for the ``merchant-310``
loan, and the partner watches the application: on approval the customer accepts (AAL2) and
the watch ends when the loan is disbursed.

    .venv/bin/python examples/partner_310.py --target localhost:50051 \\
        --ca .cache/gateway-certs/ca.crt --cert .cache/gateway-certs/shop-a.crt \\
        --key .cache/gateway-certs/shop-a.key --credential zcp_... \\
        --identity-url http://127.0.0.1:8001

Certificates: ``zerocontact gateway certs dev --partner shop-a``; the credential:
``zerocontact gateway partners register shop-a --scope identity:write --scope identity:read
--scope loans:write --scope loans:read``.

Against ``make up``'s suite, as the demo partner it registers (``make up`` prints the same
command with the certificates' paths spelled out):

    .venv/bin/python examples/partner_310.py --credential-file .cache/run/demo-partner.json

``--credential-file`` (or ``ZC_PARTNER_CREDENTIAL_FILE``) is the JSON ``zerocontact gateway
partners dev`` writes: the credential, and the gateway's address and the certificates' paths
as defaults for ``--target``, ``--ca``, ``--cert`` and ``--key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import grpc
import httpx
import pyotp
from stdnum.cn import ric

from zerocontact.gateway.v1 import identity_pb2, loan_pb2
from zerocontact.partner_client import PartnerClient, cny, error_details

PASSWORD = "correct horse battery staple"


def sample_customer() -> identity_pb2.RegisterCustomerRequest:
    """A made-up customer with a valid resident ID and mobile number.

    The birth date is drawn too, not only the three sequence digits: a suite that has run the
    example a few dozen times would otherwise refuse a drawn ID as registered already (one in a
    thousand per earlier run).
    """
    birth = date(1970, 1, 1) + timedelta(days=random.randrange(26 * 365))
    body = f"110105{birth:%Y%m%d}{random.randrange(1000):03d}"
    return identity_pb2.RegisterCustomerRequest(
        name="示例商户", resident_id=body + ric.calc_check_digit(body + "0"),
        phone=f"+86139{random.randrange(10**8):08d}", date_of_birth=birth.isoformat(),
        address="北京市朝阳区建国路88号", password=PASSWORD,
    )  # fmt: skip


async def enrol_totp(identity_url: str, party_id: str, token: str, device: str) -> pyotp.TOTP:
    """The customer's own app enrols an authenticator with identity."""
    headers = {"Authorization": f"Bearer {token}", "X-Device-Id": device}
    async with httpx.AsyncClient(base_url=identity_url, timeout=10) as http:
        r = await http.post(
            f"/v1/customers/{party_id}/factors/totp",
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        r.raise_for_status()
        totp = pyotp.parse_uri(r.json()["otpauth_uri"])
        assert isinstance(totp, pyotp.TOTP)
        r = await http.post(
            f"/v1/customers/{party_id}/factors/totp/confirmation",
            json={"code": totp.now()},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        r.raise_for_status()
    return totp


async def journey(args: argparse.Namespace) -> int:
    async with PartnerClient.connect(
        args.target, ca=Path(args.ca), cert=Path(args.cert), key=Path(args.key),
        credential=args.credential, server_name=args.server_name,
    ) as zc:  # fmt: skip
        customer = sample_customer()
        party = await zc.register_customer(customer)
        print(f"registered {party.party_id} ({party.phone_masked}), KYC {party.kyc_level}")
        device = f"device-{uuid.uuid4().hex[:8]}"
        first = await zc.start_authentication(customer.phone, PASSWORD, device_id=device)
        totp = await enrol_totp(args.identity_url, party.party_id, first.access_token, device)
        again = await zc.start_authentication(customer.phone, PASSWORD, device_id=device)
        # the next time step's code: the enrolment used this one, and codes are single use
        aal2 = await zc.complete_authentication(
            again.access_token, identity_pb2.SECOND_FACTOR_TOTP, totp.at(time.time() + 30),
            device_id=device,
        )  # fmt: skip
        print(f"authenticated: {identity_pb2.AssuranceLevel.Name(aal2.assurance_level)}")
        token = aal2.access_token
        verified = await zc.verify_customer(party.party_id, token=token)
        print(f"KYC {identity_pb2.KycLevel.Name(verified.kyc_level)}")
        request = loan_pb2.ApplyForLoanRequest(
            party_id=party.party_id, product_id="merchant-310", amount=cny(args.amount_fen),
            term_months=12, purpose="inventory", device_id=device,
        )  # fmt: skip
        started = time.monotonic()
        # No retry loop: the loan service waits for identity's events about the party, and the
        # client's service config retries UNAVAILABLE (PARTY_NOT_YET_KNOWN) with the same key.
        try:
            application = await zc.apply_for_loan(request, token=token)
        except grpc.aio.AioRpcError as exc:
            print(f"refused: {exc.code().name} {exc.details()} {error_details(exc)}")
            return 1
        print(f"applied: {application.application_id} {application.state}")
        async for update in zc.watch_loan_application(application.application_id, token=token):
            loan_state = update.loan.state if update.HasField("loan") else "-"
            print(f"  {time.monotonic() - started:6.2f} s  {update.application.state:<14}"
                  f" loan {loan_state:<10} {update.event}")  # fmt: skip
            if update.application.state == "APPROVED":
                loan = await zc.accept_loan_offer(application.application_id, token=token)
                print(f"  accepted: loan {loan.loan_id}")
            if update.terminal:
                ok = update.loan.state == "DISBURSED"
                print("disbursed" if ok else f"ended: {update.application.state}")
                return 0 if ok else 2
    return 3


def partner_parser(description: str) -> argparse.ArgumentParser:
    """The gateway connection's flags, shared by the examples."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--target", help="the gateway (default: localhost:50051)")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--credential")
    parser.add_argument(
        "--credential-file",
        default=os.environ.get("ZC_PARTNER_CREDENTIAL_FILE"),
        help="JSON of `zerocontact gateway partners dev`: the credential, and defaults for "
        "--target, --ca, --cert and --key",
    )
    parser.add_argument("--server-name", default=None, help="TLS name override (e.g. localhost)")
    parser.add_argument("--identity-url", default="http://127.0.0.1:8001")
    return parser


def partner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse; unset connection flags come from ``--credential-file``."""
    args = parser.parse_args()
    doc = json.loads(Path(args.credential_file).read_text()) if args.credential_file else {}
    for name in ("target", "ca", "cert", "key", "credential"):
        if getattr(args, name) is None:
            setattr(args, name, doc.get(name))
    args.target = args.target or "localhost:50051"
    if missing := [f"--{n}" for n in ("ca", "cert", "key", "credential") if not getattr(args, n)]:
        parser.error(f"{', '.join(missing)} required (or --credential-file)")
    return args


def main() -> int:
    parser = partner_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--amount-fen", type=int, default=5_000_000)
    return asyncio.run(journey(partner_args(parser)))


if __name__ == "__main__":
    raise SystemExit(main())
