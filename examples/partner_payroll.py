"""An example partner: the payroll journey end to end through the gateway.

An HR platform registers an employer's legal representative (a customer, who enrols an
authenticator app with identity and authenticates with two factors), registers the enterprise,
onboards it as an employer, tops up its wallet, submits a batch of five salaries to bank cards,
watches the batch, and the representative approves it (AAL2); the watch ends when every
salary is paid.

    .venv/bin/python examples/partner_payroll.py --credential-file .cache/run/demo-partner.json

The connection flags are those of ``examples/partner_310.py`` (``--credential-file`` is the
JSON ``zerocontact gateway partners dev`` writes; ``make up`` registers ``demo-partner``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from pathlib import Path

import grpc
from partner_310 import PASSWORD, enrol_totp, partner_args, partner_parser, sample_customer
from stdnum.cn import uscc

from zerocontact.gateway.v1 import identity_pb2, payroll_pb2
from zerocontact.partner_client import PartnerClient, cny, error_details, new_key

SALARY_FEN = 850_000  # 8,500.00 CNY each


def credit_code() -> str:
    """A made-up, valid unified social credit code (an enterprise in Beijing)."""
    body = f"91110105{random.randrange(10**9):09d}"
    return body + uscc.calc_check_digit(body)


def card_number(rng: random.Random) -> str:
    """A made-up 18-digit UnionPay-style card number with a valid Luhn check digit."""
    body = "622202" + "".join(rng.choices("0123456789", k=11))
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


async def journey(args: argparse.Namespace) -> int:
    async with PartnerClient.connect(
        args.target, ca=Path(args.ca), cert=Path(args.cert), key=Path(args.key),
        credential=args.credential, server_name=args.server_name,
    ) as zc:  # fmt: skip
        started = time.monotonic()

        def say(text: str) -> None:
            print(f"  {time.monotonic() - started:6.2f} s  {text}")

        customer = sample_customer()
        rep = await zc.register_customer(customer)
        say(f"representative registered {rep.party_id} ({rep.phone_masked})")
        device = f"device-{uuid.uuid4().hex[:8]}"
        first = await zc.start_authentication(customer.phone, PASSWORD, device_id=device)
        totp = await enrol_totp(args.identity_url, rep.party_id, first.access_token, device)
        again = await zc.start_authentication(customer.phone, PASSWORD, device_id=device)
        aal2 = await zc.complete_authentication(
            again.access_token, identity_pb2.SECOND_FACTOR_TOTP, totp.at(time.time() + 30),
            device_id=device,
        )  # fmt: skip
        token = aal2.access_token
        verified = await zc.verify_customer(rep.party_id, token=token)
        say(f"representative {identity_pb2.KycLevel.Name(verified.kyc_level)}, AAL2")
        enterprise = await zc.register_enterprise(
            identity_pb2.RegisterEnterpriseRequest(
                name="示例科技有限公司", credit_code=credit_code(),
                legal_representative_id=rep.party_id, business_category="I",
                registered_capital=cny(100_000_000),
            ),
            token=token,
        )  # fmt: skip
        employer_id = enterprise.party_id
        say(f"enterprise {employer_id} {identity_pb2.KycLevel.Name(enterprise.kyc_level)}")
        onboard = payroll_pb2.OnboardEmployerRequest(employer_id=employer_id)
        # No retry loop: payroll waits (bounded) for identity's events about the enterprise, and
        # the client's service config retries UNAVAILABLE (PARTY_NOT_YET_KNOWN) with the same key.
        try:
            await zc.payroll.OnboardEmployer(
                onboard, metadata=zc.metadata(token=token, key=new_key())
            )
        except grpc.aio.AioRpcError as exc:
            print(f"refused: {exc.code().name} {exc.details()} {error_details(exc)}")
            return 1
        say("employer onboarded")
        items = [
            payroll_pb2.PayrollItem(
                payee_name=f"员工{i}", card_number=card_number(random.Random(i)), amount=cny(SALARY_FEN)
            )
            for i in range(1, 6)
        ]  # fmt: skip
        total = SALARY_FEN * len(items)
        topped = await zc.payroll.TopUpWallet(
            payroll_pb2.TopUpWalletRequest(
                employer_id=employer_id, rail_reference=f"IN-{uuid.uuid4().hex[:12]}",
                amount=cny(total),
            ),
            metadata=zc.metadata(token=token, key=new_key()),
        )  # fmt: skip
        say(f"wallet topped up: {topped.employer.wallet.minor_units / 100:,.2f} CNY")
        submitted = await zc.payroll.SubmitPayrollBatch(
            payroll_pb2.SubmitPayrollBatchRequest(
                employer_id=employer_id, items=items, item_count=len(items),
                control_sum=cny(total),
            ),
            metadata=zc.metadata(token=token, key=new_key()),
        )  # fmt: skip
        batch_id = submitted.batch.batch_id
        say(f"batch {batch_id} {submitted.batch.state} ({len(items)} salaries)")
        watching = zc.watch_payroll_batch(batch_id, token=token, timeout_s=120)
        first_update = await anext(watching)  # the batch now: the watch is in place
        say(f"watch: {first_update.batch.state:<10} {first_update.batch.status}")
        approved = await zc.payroll.ApprovePayrollBatch(
            payroll_pb2.ApprovePayrollBatchRequest(batch_id=batch_id),
            metadata=zc.metadata(token=token, key=new_key()),
        )
        say(f"approved: {approved.batch.state}")
        async for update in watching:
            b = update.batch
            say(f"watch: {b.state:<10} {b.status:<5} paid {b.paid_items}/{b.item_count}"
                f" failed {b.failed_items}  {update.event}")  # fmt: skip
            if update.terminal:
                ok = b.state == "COMPLETED" and b.paid_items == b.item_count
                print("all salaries paid" if ok else f"ended: {b.state} {b.status}")
                return 0 if ok else 2
    return 3


def main() -> int:
    parser = partner_parser(__doc__.split("\n\n")[0])
    return asyncio.run(journey(partner_args(parser)))


if __name__ == "__main__":
    raise SystemExit(main())
