"""The dialogue state machine: from what was understood of a message to the next step.

Pure: the caller (``handlers``) understands the text, asks :func:`next_step` what to do, carries
it out (answer, ask, act, hand off) and stores the new :class:`DialogueState` with the
conversation. The rules:

- an action needs its slots (``REQUIRED_SLOTS``); a missing one is asked for, with the
  choices when the caller found some ("which loan?"), at most ``max_slot_asks`` times;
- an action that moves money (``MOVES_MONEY``) is done only after an explicit "yes";
- a message understood with a confidence below ``handoff_below`` goes to a person at once;
  one below ``clarify_below`` (or ``unknown``) is a failed turn, answered with a request to
  rephrase; ``max_failed_turns`` failed turns in a row go to a person;
- "转人工" (``handoff.request``) and complaints go to a person;
- while a person holds the conversation, messages go to that person and the assistant is quiet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum

__all__ = [
    "ACTION_INTENTS",
    "MOVES_MONEY",
    "REQUIRED_SLOTS",
    "Act",
    "Answer",
    "Ask",
    "Clarify",
    "Confirm",
    "Declined",
    "DialoguePolicy",
    "DialogueState",
    "HandOff",
    "HandoffReason",
    "Option",
    "Pending",
    "Step",
    "ToHuman",
    "Understood",
    "next_step",
    "ordinal",
    "parse_amount",
    "with_options",
]

# What each action needs before it can be done.
REQUIRED_SLOTS: Mapping[str, tuple[str, ...]] = {
    "loan.application_status": ("application_id",),
    "loan.next_installment": ("loan_id",),
    "loan.early_repayment_quote": ("loan_id",),
    "loan.repay": ("loan_id", "amount"),
    "payroll.batch_status": ("batch_id",),
    "identity.lock_device": ("device_id",),
    "identity.revoke_sessions": (),
}
ACTION_INTENTS = frozenset(REQUIRED_SLOTS)
# Confirmed explicitly before they are done.
MOVES_MONEY = frozenset({"loan.repay"})

# Ids the services hand out (UUIDv7 text): a customer may paste one instead of choosing.
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_AMOUNT = re.compile(r"(?<![\d.])(\d{1,12}(?:\.\d{1,2})?)(?![\d.])")
_ID_SLOTS = frozenset({"application_id", "loan_id", "batch_id"})
# A choice by its place in the list offered: 第二笔, 第2个, 最后一台, the first one, 2nd, last.
_CHINESE_NUMERALS = dict(zip("一二三四五六七八", range(1, 9), strict=True)) | {"两": 2}
_ORDINAL_ZH = re.compile(r"第\s*([一二两三四五六七八]|\d{1,2})|(最后|最末)")
_ORDINAL_EN = re.compile(
    r"\b(?:(first|1st)|(second|2nd)|(third|3rd)|(fourth|4th)|(fifth|5th)|(last))\b"
    r"|(?:\bnumber|\bno\.?|#)\s*(\d{1,2})\b"
)
_HAN = re.compile(r"[\u4e00-\u9fff]")


class HandoffReason(StrEnum):
    """Why a conversation goes to a person."""

    CUSTOMER_REQUEST = "customer_request"
    LOW_CONFIDENCE = "low_confidence"
    FAILED_TURNS = "failed_turns"
    COMPLAINT = "complaint"


@dataclass(frozen=True)
class Understood:
    """What the understanding made of one message (the part the dialogue needs)."""

    intent: str
    confidence: float
    slots: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """One choice offered for a slot: the value and what the customer sees."""

    value: str
    label: str


@dataclass(frozen=True)
class Pending:
    """An action waiting for a slot or for the customer's confirmation."""

    intent: str
    slots: Mapping[str, str]
    awaiting: str  # "slot" or "confirmation"
    slot: str | None = None
    options: tuple[Option, ...] = ()
    asked: int = 1


@dataclass(frozen=True)
class DialogueState:
    """What the conversation remembers between messages."""

    pending: Pending | None = None
    failed_turns: int = 0
    with_person: bool = False


@dataclass(frozen=True)
class DialoguePolicy:
    """Thresholds (settings of the service)."""

    handoff_below: float = 0.2
    clarify_below: float = 0.45
    max_failed_turns: int = 2
    max_slot_asks: int = 2


@dataclass(frozen=True)
class Answer:
    """Answer with the understanding's composed reply (knowledge base, greeting, thanks)."""


@dataclass(frozen=True)
class Clarify:
    """Not understood: ask the customer to say it differently (a failed turn)."""


@dataclass(frozen=True)
class Ask:
    """Ask for ``slot`` of ``intent`` (the caller may look up choices to offer)."""

    intent: str
    slot: str
    slots: Mapping[str, str]
    again: bool = False


@dataclass(frozen=True)
class Confirm:
    """Ask for an explicit yes before doing ``intent`` with ``slots``."""

    intent: str
    slots: Mapping[str, str]


@dataclass(frozen=True)
class Act:
    """Do ``intent`` with ``slots`` now."""

    intent: str
    slots: Mapping[str, str]


@dataclass(frozen=True)
class Declined:
    """The customer said no (or cancelled); nothing is done."""

    intent: str
    slots: Mapping[str, str]


@dataclass(frozen=True)
class HandOff:
    """Put the conversation in the back office's queue."""

    reason: HandoffReason


@dataclass(frozen=True)
class ToHuman:
    """A person holds the conversation: the message is theirs to answer."""


Step = Answer | Clarify | Ask | Confirm | Act | Declined | HandOff | ToHuman


def parse_amount(text: str) -> str | None:
    """The one amount in ``text`` (major units, at most two decimals), or None."""
    found = {m.group(1) for m in _AMOUNT.finditer(text.replace(",", ""))}
    if len(found) != 1:
        return None
    try:
        value = Decimal(found.pop())
    except InvalidOperation:
        return None
    return str(value) if value > 0 else None


def ordinal(text: str) -> int | None:
    """The place a short reply picks from a list (1 for the first, -1 for the last), or None:
    "第二笔", "第2个", "最后一台", "the first one", "2nd", "number 3", "last"."""
    lowered = text.strip().lower()
    if len(lowered) > (10 if _HAN.search(lowered) else 24):  # a sentence, not a pick
        return None
    if match := _ORDINAL_ZH.search(lowered):
        if match.group(2):
            return -1
        number = match.group(1)
        return int(number) if number.isdigit() else _CHINESE_NUMERALS[number]
    if match := _ORDINAL_EN.search(lowered):
        place = next(i for i, g in enumerate(match.groups(), start=1) if g)
        if place == 6:
            return -1
        return int(match.group(7)) if place == 7 else place
    return None


def _chosen(pending: Pending, text: str, understood: Understood) -> str | None:
    """The value the customer gave for the slot asked, if any."""
    slot = pending.slot or ""
    if understood.slots.get(slot):
        return understood.slots[slot]
    stripped = text.strip().rstrip("。.!\uff01")
    for option in pending.options:
        if stripped == option.value or option.value in text:
            return option.value
    if stripped.isdigit() and 1 <= int(stripped) <= len(pending.options):
        return pending.options[int(stripped) - 1].value
    place = ordinal(stripped)
    if place is not None and pending.options and 1 <= abs(place) <= len(pending.options):
        return pending.options[place - 1 if place > 0 else place].value
    if len(pending.options) == 1 and understood.intent == "confirm.yes":
        return pending.options[0].value  # "yes" to the one choice offered
    if slot in _ID_SLOTS and (ids := _ID.findall(text)) and len(set(ids)) == 1:
        return str(ids[0])
    if slot == "amount":
        return parse_amount(text)
    if slot == "device_id" and not pending.options and stripped and len(stripped) <= 128:
        return stripped
    return None


def _missing(intent: str, slots: Mapping[str, str]) -> str | None:
    return next((s for s in REQUIRED_SLOTS[intent] if not slots.get(s)), None)


def _proceed(
    intent: str, slots: Mapping[str, str], state: DialogueState
) -> tuple[Step, DialogueState]:
    """The next step of an action whose slots are ``slots``."""
    missing = _missing(intent, slots)
    if missing is not None:
        pending = Pending(intent, dict(slots), "slot", missing)
        return Ask(intent, missing, dict(slots)), replace(state, pending=pending, failed_turns=0)
    if intent in MOVES_MONEY:
        pending = Pending(intent, dict(slots), "confirmation")
        return Confirm(intent, dict(slots)), replace(state, pending=pending, failed_turns=0)
    return Act(intent, dict(slots)), replace(state, pending=None, failed_turns=0)


def _failed(state: DialogueState, policy: DialoguePolicy) -> tuple[Step, DialogueState]:
    failed = state.failed_turns + 1
    if failed >= policy.max_failed_turns:
        return HandOff(HandoffReason.FAILED_TURNS), DialogueState(with_person=True)
    return Clarify(), replace(state, pending=None, failed_turns=failed)


def _fresh(
    state: DialogueState, understood: Understood, policy: DialoguePolicy
) -> tuple[Step, DialogueState]:
    """A message that answers no pending question."""
    if understood.confidence < policy.handoff_below:
        return HandOff(HandoffReason.LOW_CONFIDENCE), DialogueState(with_person=True)
    if understood.intent == "handoff.request":
        return HandOff(HandoffReason.CUSTOMER_REQUEST), DialogueState(with_person=True)
    if understood.intent == "complaint":
        return HandOff(HandoffReason.COMPLAINT), DialogueState(with_person=True)
    if understood.intent == "unknown" or understood.confidence < policy.clarify_below:
        return _failed(state, policy)
    if understood.intent in ACTION_INTENTS:
        slots = {
            k: v for k, v in understood.slots.items() if k in REQUIRED_SLOTS[understood.intent]
        }
        return _proceed(understood.intent, slots, state)
    return Answer(), replace(state, pending=None, failed_turns=0)


def _switches(understood: Understood, pending: Pending, policy: DialoguePolicy) -> bool:
    """The message starts something else rather than answering the pending question."""
    if understood.confidence < policy.clarify_below:
        return False
    if understood.intent in ("handoff.request", "complaint"):
        return True
    return understood.intent in ACTION_INTENTS and understood.intent != pending.intent


def next_step(
    state: DialogueState,
    understood: Understood,
    text: str,
    policy: DialoguePolicy,
) -> tuple[Step, DialogueState]:
    """What to do with one customer message, and the state after it.

    ``text`` is the message itself: a choice such as "2" or a pasted id fills a slot even when
    the understanding saw no slot in it (the caller remembers the choices it offered with
    :func:`with_options`)."""
    if state.with_person:
        return ToHuman(), state
    pending = state.pending
    if pending is None or _switches(understood, pending, policy):
        return _fresh(replace(state, pending=None), understood, policy)
    if pending.awaiting == "confirmation":
        if understood.intent == "confirm.yes" and understood.confidence >= policy.clarify_below:
            return Act(pending.intent, pending.slots), replace(state, pending=None, failed_turns=0)
        if understood.intent == "confirm.no" and understood.confidence >= policy.clarify_below:
            return Declined(pending.intent, pending.slots), replace(
                state, pending=None, failed_turns=0
            )
        return _ask_again(state, pending, policy)
    if understood.intent == "confirm.no" and understood.confidence >= policy.clarify_below:
        return Declined(pending.intent, pending.slots), replace(state, pending=None, failed_turns=0)
    value = _chosen(pending, text, understood)
    if value is None:
        return _ask_again(state, pending, policy)
    slots = {**pending.slots, pending.slot or "": value}
    extra = {
        k: v
        for k, v in understood.slots.items()
        if k in REQUIRED_SLOTS[pending.intent] and not slots.get(k)
    }
    return _proceed(pending.intent, {**slots, **extra}, state)


def _ask_again(
    state: DialogueState, pending: Pending, policy: DialoguePolicy
) -> tuple[Step, DialogueState]:
    """The pending question was not answered: ask once more, then count a failed turn."""
    if pending.asked >= policy.max_slot_asks:
        step, after = _failed(replace(state, pending=None), policy)
        if isinstance(step, HandOff):
            return step, after
        return Declined(pending.intent, pending.slots), after
    again = replace(pending, asked=pending.asked + 1)
    after = replace(state, pending=again, failed_turns=state.failed_turns + 1)
    if after.failed_turns >= policy.max_failed_turns:
        return HandOff(HandoffReason.FAILED_TURNS), DialogueState(with_person=True)
    if pending.awaiting == "confirmation":
        return Confirm(pending.intent, pending.slots), after
    return Ask(pending.intent, pending.slot or "", pending.slots, again=True), after


def with_options(state: DialogueState, options: Sequence[Option]) -> DialogueState:
    """``state`` with the choices offered for its pending slot remembered."""
    if state.pending is None:
        return state
    return replace(state, pending=replace(state.pending, options=tuple(options)))
