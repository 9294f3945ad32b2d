"""An internal team's consumer of ``loan.events.v1``: the contracts wheel and aiokafka, nothing else.

It follows the rules of docs/consumers.md: a group of its own, offsets committed by hand after
the effect, events deduplicated by ``ce_id``, dispatch on the ``oneof`` case, money as
``Decimal`` from minor units, and cases it does not know logged and skipped. The "effect" here is
one printed line per 310 event.

    pip install zerocontact_contracts-*.whl aiokafka
    python examples/consumer_loan_events.py --bootstrap 127.0.0.1:9092 \\
        --group risk-team.loan-watch --from-beginning --idle-timeout 5

It imports no ``zerocontact.platform`` or service code on purpose: that is all a consumer has.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError

from zerocontact.common.v1 import money_pb2
from zerocontact.loan.v1 import events_pb2

log = logging.getLogger("consumer_loan_events")

# ISO 4217 minor-unit exponents. The wire carries integer minor units; the exponent turns them
# into an exact Decimal (never a float, which cannot hold 0.10 exactly).
EXPONENTS = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KRW": 0, "KWD": 3}


def money(m: money_pb2.Money) -> str:
    """``CNY 50000.00`` from ``Money(currency_code="CNY", minor_units=5000000)``."""
    if m.currency_code not in EXPONENTS:  # show the raw value rather than guess a scale
        return f"{m.currency_code} {m.minor_units} minor units"
    amount = Decimal(m.minor_units).scaleb(-EXPONENTS[m.currency_code])
    return f"{m.currency_code} {amount}"


def line(kind: str, **fields: object) -> str:
    return f"{kind:<10} " + " ".join(f"{k}={v}" for k, v in fields.items())


def submitted(e: events_pb2.LoanApplicationSubmitted) -> str:
    return line(
        "submitted", application=e.application_id, party=e.party_id, product=e.product_id,
        amount=money(e.amount), term=e.term_months, purpose=e.purpose,
    )  # fmt: skip


def approved(e: events_pb2.LoanApproved) -> str:
    return line(
        "approved", application=e.application_id, party=e.party_id,
        offered=money(e.offered_amount), rate=e.annual_rate, term=e.term_months,
        score=e.risk_score, reasons=",".join(r.code for r in e.reasons),
    )  # fmt: skip


def declined(e: events_pb2.LoanDeclined) -> str:
    return line(
        "declined", application=e.application_id, party=e.party_id, score=e.risk_score,
        reasons=",".join(r.code for r in e.reasons),
    )  # fmt: skip


def accepted(e: events_pb2.LoanOfferAccepted) -> str:
    return line("accepted", application=e.application_id, party=e.party_id, loan=e.loan_id)


def disbursed(e: events_pb2.LoanDisbursed) -> str:
    return line(
        "disbursed", loan=e.loan_id, application=e.application_id, party=e.party_id,
        principal=money(e.principal),
        funders=",".join(f"{f.funder_id}:{money(f.amount)}" for f in e.funders),
        rail=e.rail_reference,
    )  # fmt: skip


def repaid(e: events_pb2.RepaymentReceived) -> str:
    return line(
        "repaid", loan=e.loan_id, party=e.party_id, repayment=e.repayment_id,
        amount=money(e.amount), installment=e.installment_number, days_late=e.days_late,
    )  # fmt: skip


def overdue(e: events_pb2.LoanOverdue) -> str:
    return line(
        "overdue", loan=e.loan_id, party=e.party_id, installment=e.installment_number,
        days=e.days_past_due, amount=money(e.overdue_amount),
    )  # fmt: skip


def settled(e: events_pb2.LoanSettled) -> str:
    return line("settled", loan=e.loan_id, party=e.party_id, early=e.early_payoff)


def revenue(e: events_pb2.MerchantRevenueReported) -> str:
    return line(
        "revenue", report=e.report_id, party=e.party_id, platform=e.platform_id,
        revenue=money(e.revenue),
    )  # fmt: skip


# One formatter per `oneof` case this consumer knows. A case added to the contract later is not
# here: it is logged and skipped (docs/contracts.md), never an error.
HANDLERS: dict[str, Callable[[Any], str]] = {
    "loan_application_submitted": submitted,
    "loan_approved": approved,
    "loan_declined": declined,
    "loan_offer_accepted": accepted,
    "loan_disbursed": disbursed,
    "repayment_received": repaid,
    "loan_overdue": overdue,
    "loan_settled": settled,
    "merchant_revenue_reported": revenue,
}


class LoanEventPrinter:
    """Handles each event once per ``ce_id``; its effect is a printed line."""

    def __init__(self) -> None:
        # In memory, so a restart forgets it. A real consumer stores the processed ids in the
        # same write as its effect (one document, one transaction): then a redelivery after a
        # crash between the effect and the commit finds the id and does nothing.
        self.seen: set[str] = set()

    def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        headers = {k: v.decode() for k, v in record.headers}
        # Every suite event has a ce_id; the record's position stands in only for a foreign one.
        event_id = headers.get("ce_id") or f"{record.topic}/{record.partition}/{record.offset}"
        if event_id in self.seen:
            log.info("duplicate ce_id=%s skipped (at-least-once delivery)", event_id)
            return
        try:
            wrapper = events_pb2.LoanEvent.FromString(record.value or b"")
        except DecodeError as exc:
            # A poison record, not a new event type. A real consumer writes it unchanged, with
            # the error in headers, to its own `<team>.<purpose>.dlq` and goes on
            # (docs/consumers.md, section 7); the example only says so.
            log.error("undecodable record at %s/%s: %s", record.partition, record.offset, exc)
            return
        case = wrapper.WhichOneof("event")
        handler = HANDLERS.get(case or "")
        if case is None or handler is None:
            # A newer producer's event: its field is unknown to these contracts, so WhichOneof
            # is None; ce_type still names it without decoding anything. Not an error.
            log.warning(
                "unknown event skipped: ce_type=%s ce_id=%s", headers.get("ce_type"), event_id
            )
        else:
            print(handler(getattr(wrapper, case)), flush=True)
        self.seen.add(event_id)


async def consume(args: argparse.Namespace) -> int:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.group,
        enable_auto_commit=False,  # commit after the effect, never before it
        # Where a group with no committed offset starts; a group that has committed resumes.
        auto_offset_reset="earliest" if args.from_beginning else "latest",
    )
    printer = LoanEventPrinter()
    handled = 0
    await consumer.start()
    try:
        idle_since: float | None = None
        while args.max is None or handled < args.max:
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                # The idle clock starts once partitions are assigned: joining a group takes
                # seconds, and that is not "nothing to read".
                if consumer.assignment():
                    idle_since = idle_since or time.monotonic()
                    if args.idle_timeout and time.monotonic() - idle_since >= args.idle_timeout:
                        break
                continue
            idle_since = None
            done: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    if args.max is not None and handled >= args.max:
                        break
                    printer.handle(record)
                    handled += 1
                    done[tp] = record.offset + 1  # the next offset to read
            if done:
                await consumer.commit(done)
    finally:
        await consumer.stop()
    log.info("%d records handled, %d distinct events", handled, len(printer.seen))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="loan.events.v1")
    parser.add_argument("--group", required=True, help="consumer group: <team>.<purpose>")
    parser.add_argument(
        "--from-beginning", action="store_true", help="a new group starts at the earliest offset"
    )
    parser.add_argument("--max", type=int, help="stop after N records")
    parser.add_argument(
        "--idle-timeout", type=float, help="stop after S seconds with nothing to read"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # its group chatter is not ours
    return asyncio.run(consume(args))


if __name__ == "__main__":
    sys.exit(main())
