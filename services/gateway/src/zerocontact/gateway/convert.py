"""Between the gateway's protobuf messages and the services' JSON (pure, no I/O)."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.common.v1 import money_pb2
from zerocontact.gateway.errors import invalid, invalid_fields
from zerocontact.gateway.v1 import assistant_pb2, identity_pb2, loan_pb2, payroll_pb2
from zerocontact.platform.money import CURRENCY_EXPONENTS, InvalidAmount, Money, UnknownCurrency

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _states(enum: Any, prefix: str) -> dict[str, int]:
    """A service's state name → the proto enum's value (``<PREFIX>_<NAME>``), UNSPECIFIED left
    out: a state without a value maps to UNSPECIFIED (0), and tests/unit enumerates the
    services' states so that never ships."""
    return {name.removeprefix(prefix): number for name, number in enum.items() if number != 0}


APPLICATION_STATES = _states(loan_pb2.LoanApplicationState, "LOAN_APPLICATION_STATE_")
LOAN_STATES = _states(loan_pb2.LoanState, "LOAN_STATE_")
BATCH_STATES = _states(payroll_pb2.PayrollBatchState, "PAYROLL_BATCH_STATE_")


def application_state(state: str) -> loan_pb2.LoanApplicationState.ValueType:
    """Loan's application state as the enum (UNSPECIFIED for a state the protos lack)."""
    return APPLICATION_STATES.get(state, 0)  # type: ignore[return-value]


def loan_state(state: str) -> loan_pb2.LoanState.ValueType:
    """Loan's loan state as the enum (UNSPECIFIED for a state the protos lack)."""
    return LOAN_STATES.get(state, 0)  # type: ignore[return-value]


def batch_state(state: str) -> payroll_pb2.PayrollBatchState.ValueType:
    """Payroll's batch state as the enum (UNSPECIFIED for a state the protos lack)."""
    return BATCH_STATES.get(state, 0)  # type: ignore[return-value]


def sync_states(app: loan_pb2.LoanApplication, loan: loan_pb2.Loan | None) -> None:
    """Set the enum states from the text ones (after a watch folded an event into them)."""
    app.lifecycle_state = application_state(app.state)
    if loan is not None:
        loan.lifecycle_state = loan_state(loan.state)


def require_uuid(value: str, field: str) -> str:
    """The value when it is a lower-case UUID, else INVALID_ARGUMENT naming ``field``."""
    if not UUID.match(value):
        raise invalid(field, "must be a UUID")
    return value


def major(money: money_pb2.Money, field: str, *, positive: bool = True) -> tuple[str, str]:
    """A Money message as (decimal string in major units, currency), validated."""
    problems: list[tuple[str, str]] = []
    if not re.fullmatch(r"[A-Z]{3}", money.currency_code):
        problems.append((f"{field}.currency_code", "must be an ISO 4217 code"))
    if positive and money.minor_units <= 0:
        problems.append((f"{field}.minor_units", "must be greater than 0"))
    if problems:
        raise invalid_fields(problems)
    try:
        amount = Money(money.currency_code, int(money.minor_units))
    except (InvalidAmount, UnknownCurrency, ValueError) as exc:
        raise invalid(f"{field}.currency_code", "unknown currency") from exc
    return str(amount.to_decimal()), amount.currency


_AMOUNT = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")


@functools.lru_cache(maxsize=4096)
def _minor_units(amount: str, exponent: int) -> int | None:
    """``amount`` (a plain decimal string) in minor units, None if it has too many places.

    Cached: a loan's schedule repeats the same few amounts ("0.00", each installment's)."""
    match = _AMOUNT.match(amount)
    if not match or len(match.group(3) or "") > exponent:
        return None
    sign, whole, fraction = match.groups()
    minor = int(whole + (fraction or "").ljust(exponent, "0"))
    return -minor if sign else minor


def money(amount: str | Decimal, currency: str) -> money_pb2.Money:
    """A decimal amount in major units as a Money message.

    The services' amounts are plain decimal strings ("8884.88"); those are scaled by string
    arithmetic (a loan view holds ~75 amounts: through Decimal that cost ~250 µs a call).
    Anything else goes through :class:`Money`, which checks it."""
    if isinstance(amount, str) and (exponent := CURRENCY_EXPONENTS.get(currency)) is not None:
        minor = _minor_units(amount, exponent)
        if minor is not None:
            return money_pb2.Money(currency_code=currency, minor_units=minor)
    value = Money.of(Decimal(str(amount)), currency)
    return money_pb2.Money(currency_code=value.currency, minor_units=value.minor_units)


def timestamp(value: str | None) -> Timestamp | None:
    """An ISO 8601 string as a Timestamp."""
    if not value:
        return None
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return ts


def when(ts: Timestamp, field: str) -> datetime:
    """A request's Timestamp as a naive UTC datetime; INVALID_ARGUMENT naming ``field`` when it
    is outside Timestamp's range (years 1-9999, nanos 0-999,999,999)."""
    try:
        return ts.ToDatetime()
    except (ValueError, OverflowError):
        raise invalid(field, "not a valid timestamp") from None


def iso(ts: Timestamp, field: str) -> str:
    """A request's Timestamp as ISO 8601 (UTC); INVALID_ARGUMENT naming ``field`` if invalid."""
    return when(ts, field).isoformat() + "Z"


_KYC = {
    "NONE": identity_pb2.KYC_LEVEL_NONE,
    "BASIC": identity_pb2.KYC_LEVEL_BASIC,
    "VERIFIED": identity_pb2.KYC_LEVEL_VERIFIED,
    "ENHANCED": identity_pb2.KYC_LEVEL_ENHANCED,
}


def kyc(level: str) -> identity_pb2.KycLevel.ValueType:
    """Identity's KYC level name (with or without the KYC_LEVEL_ prefix) as the enum."""
    return _KYC.get(level.removeprefix("KYC_LEVEL_"), identity_pb2.KYC_LEVEL_UNSPECIFIED)


def aal(level: str) -> identity_pb2.AssuranceLevel.ValueType:
    """AAL1/AAL2 as the enum."""
    return {
        "AAL1": identity_pb2.ASSURANCE_LEVEL_AAL1,
        "AAL2": identity_pb2.ASSURANCE_LEVEL_AAL2,
    }.get(level, identity_pb2.ASSURANCE_LEVEL_UNSPECIFIED)


def customer(view: dict[str, Any]) -> identity_pb2.Party:
    """Identity's CustomerView as a Party."""
    party = identity_pb2.Party(
        party_id=view["customer_id"],
        kind="customer",
        name=view["name"],
        id_number_masked=view["resident_id"],
        phone_masked=view["phone"],
        kyc_level=kyc(str(view["kyc_level"])),
    )
    if (registered := timestamp(view.get("registered_at"))) is not None:
        party.registered_at.CopyFrom(registered)
    return party


def enterprise(view: dict[str, Any]) -> identity_pb2.Party:
    """Identity's EnterpriseView as a Party."""
    party = identity_pb2.Party(
        party_id=view["enterprise_id"],
        kind="enterprise",
        name=view["name"],
        id_number_masked=view["credit_code"],
        kyc_level=kyc(str(view["kyc_level"])),
        legal_representative_id=view["legal_representative_id"],
    )
    if (registered := timestamp(view.get("registered_at"))) is not None:
        party.registered_at.CopyFrom(registered)
    return party


def product(view: dict[str, Any]) -> loan_pb2.LoanProduct:
    """Loan's ProductView as a LoanProduct."""
    return loan_pb2.LoanProduct(
        product_id=view["product_id"],
        name=view["name"],
        min_amount=money(view["min_amount"], view["currency"]),
        max_amount=money(view["max_amount"], view["currency"]),
        min_term_months=view["min_term_months"],
        max_term_months=view["max_term_months"],
        annual_rate=view["annual_rate"],
        rate_after_discount=view["rate_after_discount"],
        repayment_method=view["repayment_method"],
        min_kyc_level=view["min_kyc_level"],
    )


def application(view: dict[str, Any]) -> loan_pb2.LoanApplication:
    """Loan's ApplicationView as a LoanApplication."""
    out = loan_pb2.LoanApplication(
        application_id=view["application_id"],
        party_id=view["party_id"],
        product_id=view["product_id"],
        amount=money(view["amount"], view["currency"]),
        term_months=view["term_months"],
        state=view["state"],
        lifecycle_state=application_state(view["state"]),
        annual_rate=view.get("annual_rate") or "",
        risk_score=view.get("risk_score") or 0,
        risk_band=view.get("risk_band") or "",
        reasons=[loan_pb2.DecisionReason(**r) for r in view.get("reasons") or []],
        loan_id=view.get("loan_id") or "",
    )
    if view.get("offered_amount"):
        out.offered_amount.CopyFrom(money(view["offered_amount"], view["currency"]))
    for name in ("submitted_at", "offer_expires_at"):
        if (ts := timestamp(view.get(name))) is not None:
            getattr(out, name).CopyFrom(ts)
    return out


def loan(view: dict[str, Any]) -> loan_pb2.Loan:
    """Loan's LoanView as a Loan."""
    currency = view["currency"]
    out = loan_pb2.Loan(
        loan_id=view["loan_id"],
        application_id=view["application_id"],
        party_id=view["party_id"],
        product_id=view["product_id"],
        state=view["state"],
        lifecycle_state=loan_state(view["state"]),
        principal=money(view["principal"], currency),
        annual_rate=view["annual_rate"],
        term_months=view["term_months"],
        delinquency_bucket=view.get("delinquency_bucket") or "",
        schedule=[
            loan_pb2.Installment(
                number=i["number"],
                due_date=str(i["due_date"]),
                principal=money(i["principal"], currency),
                interest=money(i["interest"], currency),
                paid_principal=money(i["paid_principal"], currency),
                paid_interest=money(i["paid_interest"], currency),
            )
            for i in view.get("schedule") or []
        ],
    )
    if (ts := timestamp(view.get("disbursed_at"))) is not None:
        out.disbursed_at.CopyFrom(ts)
    return out


def batch(view: dict[str, Any]) -> payroll_pb2.PayrollBatch:
    """Payroll's BatchView as a PayrollBatch."""
    counts = view.get("counts") or {}
    return payroll_pb2.PayrollBatch(
        batch_id=view["batch_id"],
        employer_id=view["employer_id"],
        state=view["state"],
        lifecycle_state=batch_state(view["state"]),
        status=view["status"],
        item_count=view["item_count"],
        control_sum=money(view["control_sum"], view["currency"]),
        paid_items=int(counts.get("PAID", 0)),
        failed_items=int(counts.get("FAILED", 0)),
        pending_items=int(counts.get("PENDING", 0)) + int(counts.get("SENT", 0)),
    )


def employer(view: dict[str, Any]) -> payroll_pb2.Employer:
    """Payroll's employer view as an Employer."""
    currency = str(view.get("currency") or "CNY")
    return payroll_pb2.Employer(
        employer_id=view["employer_id"],
        wallet=money_pb2.Money(
            currency_code=currency, minor_units=int(view.get("wallet_minor", 0))
        ),
    )


# -- the assistant (AssistantService) ------------------------------------------------------

_CONVERSATION_STATES = _states(assistant_pb2.ConversationState, "CONVERSATION_STATE_")
_SENDERS = _states(assistant_pb2.MessageSender, "MESSAGE_SENDER_")
_KINDS = _states(assistant_pb2.MessageKind, "MESSAGE_KIND_")
_AWAITING = _states(assistant_pb2.Awaiting, "AWAITING_")
_HANDOFF_STATES = _states(assistant_pb2.HandoffState, "HANDOFF_STATE_")


def _upper(states: dict[str, int], value: str | None) -> Any:
    return states.get((value or "").upper(), 0)


def assistant_message(view: dict[str, Any]) -> assistant_pb2.AssistantMessage:
    """One message of the assistant's API (already masked by the assistant)."""
    return assistant_pb2.AssistantMessage(
        seq=view["seq"], sender=_upper(_SENDERS, view["sender"]),
        kind=_upper(_KINDS, view["kind"]), text=view["text"], at=timestamp(view["at"]),
        intent=view.get("intent") or "", article_id=view.get("article_id") or "",
        confidence=view.get("confidence") or 0.0, blocked=bool(view.get("blocked")),
    )  # fmt: skip


def pending_turn(view: dict[str, Any] | None) -> assistant_pb2.PendingTurn | None:
    """What the assistant waits for; None when nothing."""
    if not view:
        return None
    return assistant_pb2.PendingTurn(
        intent=view["intent"], awaiting=_upper(_AWAITING, view["awaiting"]),
        slot=view.get("slot") or "",
        options=[assistant_pb2.AssistantOption(value=o["value"], label=o["label"])
                 for o in view.get("options") or []],
    )  # fmt: skip


def assistant_handoff(view: dict[str, Any] | None) -> assistant_pb2.AssistantHandoff | None:
    """The conversation's hand-off; None when none."""
    if not view:
        return None
    return assistant_pb2.AssistantHandoff(
        handoff_id=view["handoff_id"], state=_upper(_HANDOFF_STATES, view["state"])
    )


def conversation_state(state: str) -> assistant_pb2.ConversationState.ValueType:
    """The assistant's conversation state as the enum."""
    return _upper(_CONVERSATION_STATES, state)  # type: ignore[no-any-return]


def conversation(view: dict[str, Any]) -> assistant_pb2.Conversation:
    """A conversation of the assistant's API."""
    return assistant_pb2.Conversation(
        conversation_id=view["conversation_id"], party_id=view["party_id"],
        state=conversation_state(view["state"]), with_person=bool(view["with_person"]),
        started_at=timestamp(view["started_at"]), pending=pending_turn(view.get("pending")),
        handoff=assistant_handoff(view.get("handoff")),
        messages=[assistant_message(m) for m in view.get("messages") or []],
    )  # fmt: skip


def assistant_turn(view: dict[str, Any]) -> assistant_pb2.SendMessageResponse:
    """What one message led to."""
    reply = view.get("reply")
    return assistant_pb2.SendMessageResponse(
        conversation_id=view["conversation_id"], state=conversation_state(view["state"]),
        with_person=bool(view["with_person"]),
        messages=[assistant_message(m) for m in view.get("messages") or []],
        reply=assistant_message(reply) if reply else None,
        pending=pending_turn(view.get("pending")), handoff=assistant_handoff(view.get("handoff")),
    )  # fmt: skip
