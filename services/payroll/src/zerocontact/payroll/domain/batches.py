"""Payroll batches: the instructions, their validation with a per-item report, item states.

A batch is validated as a whole before any money moves: every item must be valid and the
declared item count and control sum must match, otherwise the batch is refused with the
per-item report and nothing is reserved.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from zerocontact.payroll.domain.cards import Card, InvalidCard, parse_card
from zerocontact.platform.money import InvalidAmount, Money

MAX_ITEMS = 100_000
CURRENCY = "CNY"
CSV_REQUIRED = ("payee_name", "card_number", "amount")
CSV_OPTIONAL = (
    "end_to_end_id",
    "customer_id",
    "gross",
    "income_tax",
    "social_insurance",
    "housing_fund",
)
DEDUCTION_KINDS = ("income_tax", "social_insurance", "housing_fund")


class ItemState(StrEnum):
    """An item's state machine: PENDING → SENT → PAID | FAILED (SENT → PENDING to retry)."""

    PENDING = "PENDING"
    SENT = "SENT"
    PAID = "PAID"
    FAILED = "FAILED"


class BatchState(StrEnum):
    """SUBMITTED → APPROVED (funds reserved) → EXECUTING → COMPLETED; REFUSED never moves."""

    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    REFUSED = "REFUSED"


@dataclass(frozen=True, slots=True)
class Payslip:
    """Gross pay, deductions by kind and net pay (what the card receives)."""

    gross: Money
    deductions: Mapping[str, Money]
    net: Money


@dataclass(frozen=True, slots=True)
class RawItem:
    """An item as submitted (strings), before validation."""

    payee_name: str
    card_number: str
    amount: str
    end_to_end_id: str = ""
    customer_id: str = ""
    gross: str = ""
    deductions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Instruction:
    """A validated payment instruction (ISO 20022 CdtTrfTxInf)."""

    seq: int
    end_to_end_id: str
    payee_name: str
    card: Card
    amount: Money
    customer_id: str
    payslip: Payslip


@dataclass(frozen=True, slots=True)
class ItemProblem:
    """Why one item was refused: its position, the field and a code."""

    seq: int
    field: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Amount and size limits a batch must respect."""

    max_item_amount: Money
    max_items: int = MAX_ITEMS


@dataclass
class ValidationReport:
    """The outcome of validating a batch: instructions when valid, problems otherwise."""

    instructions: list[Instruction]
    item_problems: list[ItemProblem]
    batch_problems: list[str]
    item_count: int
    control_sum: Money

    @property
    def ok(self) -> bool:
        """True when the batch may be accepted."""
        return not self.item_problems and not self.batch_problems


class MalformedCsv(ValueError):
    """The CSV cannot be read as a batch at all (encoding, header)."""


def _money(text: str, *, currency: str) -> Money:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise InvalidAmount(f"not a number: {text!r}") from None
    return Money.of(value, currency)


def default_end_to_end_id(batch_id: str, seq: int) -> str:
    """A deterministic EndToEndId (≤ 35 characters, ISO 20022 Max35Text)."""
    return f"{batch_id.replace('-', '')[:24]}-{seq:06d}"


def validate_batch(
    batch_id: str,
    raw_items: Sequence[RawItem],
    *,
    declared_count: int | None,
    declared_sum: Decimal | None,
    limits: BatchLimits,
    currency: str = CURRENCY,
) -> ValidationReport:
    """Validate every item and the batch totals; nothing is refused silently."""
    problems: list[ItemProblem] = []
    batch_problems: list[str] = []
    instructions: list[Instruction] = []
    seen_cards: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    total = 0
    declared_total = 0  # every readable amount, so a sum mismatch is reported with bad items too
    if not raw_items:
        batch_problems.append("empty_batch")
    if len(raw_items) > limits.max_items:
        batch_problems.append("too_many_items")
    for seq, raw in enumerate(raw_items, start=1):
        item_problems: list[ItemProblem] = []

        def refuse(
            field_name: str,
            code: str,
            message: str,
            seq: int = seq,
            into: list[ItemProblem] = item_problems,
        ) -> None:
            into.append(ItemProblem(seq, field_name, code, message))

        name = raw.payee_name.strip()
        if not name or len(name) > 140:
            refuse("payee_name", "invalid_name", "a name has 1 to 140 characters")
        card: Card | None = None
        try:
            card = parse_card(raw.card_number)
        except InvalidCard as exc:
            refuse("card_number", "invalid_card", str(exc))
        amount: Money | None = None
        try:
            amount = _money(raw.amount, currency=currency)
            declared_total += max(amount.minor_units, 0)
            if amount.minor_units <= 0:
                refuse("amount", "invalid_amount", "the amount must be positive")
                amount = None
            elif amount > limits.max_item_amount:
                refuse("amount", "amount_over_limit", f"the limit is {limits.max_item_amount}")
                amount = None
        except InvalidAmount as exc:
            refuse("amount", "invalid_amount", str(exc))
        e2e = raw.end_to_end_id.strip() or default_end_to_end_id(batch_id, seq)
        if len(e2e) > 35 or not e2e.isprintable():
            refuse("end_to_end_id", "invalid_end_to_end_id", "1 to 35 printable characters")
        elif e2e in seen_ids:
            refuse("end_to_end_id", "duplicate_end_to_end_id", f"same as item {seen_ids[e2e]}")
        else:
            seen_ids[e2e] = seq
        if card is not None:
            if card.number in seen_cards:
                refuse(
                    "card_number", "duplicate_payee", f"same card as item {seen_cards[card.number]}"
                )
            else:
                seen_cards[card.number] = seq
        payslip: Payslip | None = None
        if amount is not None:
            try:
                payslip = _payslip(raw, amount, currency=currency)
            except InvalidAmount as exc:
                refuse("gross", "invalid_payslip", str(exc))
        if item_problems or card is None or amount is None or payslip is None:
            problems.extend(item_problems)
            continue
        total += amount.minor_units
        instructions.append(
            Instruction(seq, e2e, name, card, amount, raw.customer_id.strip(), payslip)
        )
    control_sum = Money(currency, total)
    if declared_count is not None and declared_count != len(raw_items):
        batch_problems.append("item_count_mismatch")
    if declared_sum is not None:
        try:
            declared = Money.of(declared_sum, currency)
        except InvalidAmount:
            batch_problems.append("control_sum_mismatch")
        else:
            if declared.minor_units != declared_total:
                batch_problems.append("control_sum_mismatch")
    return ValidationReport(
        instructions=instructions if not problems and not batch_problems else [],
        item_problems=problems,
        batch_problems=sorted(set(batch_problems)),
        item_count=len(raw_items),
        control_sum=control_sum,
    )


def _payslip(raw: RawItem, net: Money, *, currency: str) -> Payslip:
    """The payslip of an item: gross minus deductions must equal the net amount paid."""
    deductions = {
        kind: _money(value, currency=currency)
        for kind, value in raw.deductions.items()
        if value and value.strip()
    }
    if any(d.minor_units < 0 for d in deductions.values()):
        raise InvalidAmount("deductions cannot be negative")
    if not raw.gross.strip():
        if deductions:
            raise InvalidAmount("deductions need a gross amount")
        return Payslip(net, {}, net)
    gross = _money(raw.gross, currency=currency)
    deducted = sum((d.minor_units for d in deductions.values()), 0)
    if gross.minor_units - deducted != net.minor_units:
        raise InvalidAmount("gross minus deductions must equal the amount paid")
    return Payslip(gross, deductions, net)


def parse_csv(text: str) -> list[RawItem]:
    """Read a CSV batch (header row required); raise :class:`MalformedCsv` when unreadable.

    A row with the wrong number of fields is kept as an item that fails validation, so the
    per-item report names it.
    """
    if not text.strip():
        raise MalformedCsv("the file is empty")
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), restkey="_extra", strict=True)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise MalformedCsv(f"the header lacks {', '.join(missing)}")
        unknown = [h for h in header if h not in CSV_REQUIRED + CSV_OPTIONAL]
        if unknown:
            raise MalformedCsv(f"unknown columns: {', '.join(unknown)}")
        reader.fieldnames = header
        items = [_raw_item(row) for row in reader]
    except csv.Error as exc:
        raise MalformedCsv(f"line {exc}") from None
    return items


def _raw_item(row: Mapping[str, object]) -> RawItem:
    def text(name: str) -> str:
        value = row.get(name)
        return value if isinstance(value, str) else ""

    if row.get("_extra") is not None or any(row.get(c) is None for c in CSV_REQUIRED):
        # a short or long row: make the amount unreadable so the item is refused
        return RawItem(text("payee_name"), text("card_number"), "malformed row")
    return RawItem(
        payee_name=text("payee_name"),
        card_number=text("card_number"),
        amount=text("amount"),
        end_to_end_id=text("end_to_end_id"),
        customer_id=text("customer_id"),
        gross=text("gross"),
        deductions={k: text(k) for k in DEDUCTION_KINDS},
    )


def csv_text(items: Iterable[RawItem]) -> str:
    """Write items as a CSV batch (the CLI and tests use it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "end_to_end_id",
            "payee_name",
            "card_number",
            "amount",
            "customer_id",
            "gross",
            *DEDUCTION_KINDS,
        ]
    )
    for item in items:
        writer.writerow(
            [
                item.end_to_end_id,
                item.payee_name,
                item.card_number,
                item.amount,
                item.customer_id,
                item.gross,
                *(item.deductions.get(k, "") for k in DEDUCTION_KINDS),
            ]
        )
    return out.getvalue()


def batch_status(paid: int, failed: int, open_items: int) -> str:
    """The pain.002 group status: PDNG while items are open, then ACSC, PART or RJCT."""
    if open_items:
        return "PDNG"
    if failed == 0:
        return "ACSC"
    return "RJCT" if paid == 0 else "PART"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential back-off for retryable rail failures (timeouts)."""

    max_attempts: int = 4
    initial_s: float = 0.05
    max_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` ≥ 1 made so far)."""
        return float(min(self.max_s, self.initial_s * 2 ** (attempt - 1)))

    def exhausted(self, attempts: int) -> bool:
        """True when no attempt is left."""
        return attempts >= self.max_attempts
