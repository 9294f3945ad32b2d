"""Acting for the customer: each action is one call to its owning service with the customer's
own token, and its result (or refusal) becomes a fixed reply.

Repaying moves money, so it is confirmed first (the dialogue) and needs a stepped-up token:
AAL2 and an authentication at most ``step_up_max_age_s`` old, the rule loan applies to the
money it pays out. A token that is not stepped up gets "please verify first", never a bypass.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from zerocontact.assistant.backends import Called
from zerocontact.assistant.domain.dialogue import Option
from zerocontact.assistant.domain.replies import state_name
from zerocontact.assistant.handlers.context import AssistantDeps, Said, derived_key, safe
from zerocontact.platform.auth import Principal, StepUpRequired, check_step_up

__all__ = ["ActionResult", "Turn", "confirm", "options_for", "perform"]

_STATE_REFUSALS = frozenset({"conflict", "loan_not_repayable", "invalid_request", "invalid_amount"})


@dataclass(frozen=True)
class Turn:
    """Who asks, with which token, in which conversation and message (for derived keys)."""

    principal: Principal
    token: str
    language: str
    conversation_id: str
    turn_key: str


@dataclass(frozen=True)
class ActionResult:
    """The reply and the facts of the action (for ActionPerformed)."""

    said: Said
    kind: str
    outcome: str
    resource_id: str = ""
    refusal: str = ""


def _refused(kind: str, called: Called, resource: str, language: str) -> ActionResult:
    if called.outcome == "step_up_required":
        said = safe("action", "step_up_required", language)
    elif called.outcome == "unavailable":
        said = safe("action", "unavailable", language)
    elif called.refusal in _STATE_REFUSALS:
        said = safe("action", "refused.state", language)
    else:
        said = safe("action", "refused", language)
    return ActionResult(said, kind, called.outcome, resource, called.refusal)


def _stepped_up(deps: AssistantDeps, turn: Turn) -> bool:
    try:
        check_step_up(turn.principal, float(deps.settings.step_up_max_age_s))
    except StepUpRequired:
        return False
    return True


def _short(resource_id: str) -> str:
    """How an id is shown in a sentence: its last 8 characters."""
    return f"…{resource_id[-8:]}" if len(resource_id) > 8 else resource_id


def _next_installment(loan: dict[str, Any]) -> dict[str, Any] | None:
    """The first installment not fully paid, with what is due on it."""
    for item in loan.get("schedule", []):
        try:
            principal = Decimal(item["principal"]) - Decimal(item["paid_principal"])
            interest = Decimal(item["interest"]) - Decimal(item["paid_interest"])
            penalty = Decimal(item["penalty_accrued"]) - Decimal(item["paid_penalty"])
        except (KeyError, InvalidOperation):
            continue
        if principal + interest + penalty > 0:
            return {
                "number": item["number"],
                "due": item["due_date"],
                "principal": principal,
                "interest": interest,
                "amount": principal + interest + penalty,
            }
    return None


async def perform(
    deps: AssistantDeps, intent: str, slots: dict[str, str], turn: Turn
) -> ActionResult:
    """Do ``intent`` for the customer (its slots are filled; a money move was confirmed)."""
    b, lang, token = deps.backends, turn.language, turn.token
    if intent == "loan.application_status":
        app_id = slots["application_id"]
        called = await b.application(token, app_id)
        if not called.ok:
            return _refused(intent, called, app_id, lang)
        state = str(called.body["state"])
        said = safe(
            "action",
            "result.application_status",
            lang,
            application=_short(app_id),
            state=state_name(state, lang),
        )
        return ActionResult(said, intent, "succeeded", app_id)
    if intent == "loan.next_installment":
        loan_id = slots["loan_id"]
        called = await b.loan(token, loan_id)
        if not called.ok:
            return _refused(intent, called, loan_id, lang)
        due = _next_installment(called.body)
        if due is None:
            said = safe("action", "result.no_installment", lang, loan=_short(loan_id))
        else:
            said = safe(
                "action",
                "result.next_installment",
                lang,
                loan=_short(loan_id),
                currency=called.body["currency"],
                **due,
            )
        return ActionResult(said, intent, "succeeded", loan_id)
    if intent == "loan.early_repayment_quote":
        loan_id = slots["loan_id"]
        called = await b.payoff(token, loan_id)
        if not called.ok:
            return _refused(intent, called, loan_id, lang)
        q = called.body
        said = safe(
            "action",
            "result.early_repayment_quote",
            lang,
            loan=_short(loan_id),
            as_of=q["as_of"],
            amount=q["amount"],
            currency=q["currency"],
        )
        return ActionResult(said, intent, "succeeded", loan_id)
    if intent == "loan.repay":
        return await _repay(deps, slots, turn)
    if intent == "payroll.batch_status":
        batch_id = slots["batch_id"]
        called = await b.batch(token, batch_id)
        if not called.ok:
            return _refused(intent, called, batch_id, lang)
        counts: dict[str, int] = called.body.get("counts") or {}
        counts_text = safe(
            "action",
            "result.batch_counts",
            lang,
            total=called.body.get("item_count", 0),
            paid=counts.get("PAID", 0),
            failed=counts.get("FAILED", 0),
        ).text
        said = safe(
            "action",
            "result.batch_status",
            lang,
            batch=_short(batch_id),
            state=state_name(str(called.body["state"]), lang),
            counts=counts_text,
        )
        return ActionResult(said, intent, "succeeded", batch_id)
    if intent in ("identity.lock_device", "identity.revoke_sessions"):
        device = slots.get("device_id") if intent == "identity.lock_device" else None
        called = await b.revoke_sessions(token, device_id=device, key=_key(turn, intent))
        if not called.ok:
            return _refused(intent, called, device or "", lang)
        count = int(called.body.get("revoked", 0))
        template = "result.device_locked" if device else "result.sessions_revoked"
        return ActionResult(
            safe("action", template, lang, count=count), intent, "succeeded", device or ""
        )
    raise ValueError(f"not an action: {intent}")


def _key(turn: Turn, intent: str) -> str:
    return derived_key(turn.conversation_id, turn.turn_key, intent)


async def _repay(deps: AssistantDeps, slots: dict[str, str], turn: Turn) -> ActionResult:
    intent, loan_id, lang = "loan.repay", slots["loan_id"], turn.language
    if not _stepped_up(deps, turn):
        said = safe("action", "step_up_required", lang)
        return ActionResult(said, intent, "step_up_required", loan_id, "step_up_required")
    called = await deps.backends.repay(
        turn.token,
        loan_id,
        amount=slots["amount"],
        currency=slots.get("currency", "CNY"),
        key=_key(turn, intent),
    )
    if not called.ok:
        return _refused(intent, called, loan_id, lang)
    r = called.body
    settled = safe("action", "result.settled", lang).text if r.get("settled") else ""
    said = safe(
        "action",
        "result.repaid",
        lang,
        principal=r["principal"],
        interest=r["interest"],
        penalty=r["penalty"],
        currency=slots.get("currency", "CNY"),
        settled=settled,
    )
    return ActionResult(said, intent, "succeeded", loan_id)


async def confirm(
    deps: AssistantDeps, intent: str, slots: dict[str, str], turn: Turn
) -> tuple[Said, dict[str, str]] | ActionResult:
    """The confirmation question of a money move, or why it cannot be asked: the token is not
    stepped up, or the loan is not the customer's (loan is asked before anything is promised).
    The slots come back with the loan's currency added."""
    loan_id, lang = slots["loan_id"], turn.language
    if not _stepped_up(deps, turn):
        said = safe("action", "step_up_required", lang)
        return ActionResult(said, intent, "step_up_required", loan_id, "step_up_required")
    called = await deps.backends.loan(turn.token, loan_id)
    if not called.ok:
        return _refused(intent, called, loan_id, lang)
    currency = str(called.body["currency"])
    said = safe(
        "confirmation",
        "confirm.loan.repay",
        lang,
        loan=_short(loan_id),
        amount=slots["amount"],
        currency=currency,
    )
    return said, {**slots, "currency": currency}


async def options_for(deps: AssistantDeps, slot: str, turn: Turn) -> list[Option]:
    """Choices to offer for ``slot`` where an owning service lists them (the customer's
    devices); empty when none are listed or the service does not answer."""
    if slot != "device_id":
        return []
    called = await deps.backends.sessions(turn.token)
    if not called.ok:
        return []
    devices: list[dict[str, Any]] = called.body.get("devices", [])
    return [
        Option(str(d["device_id"]), f"{d['device_id']} ({d.get('sessions', 1)})")
        for d in devices
        if d.get("device_id") and not d.get("current")
    ]
