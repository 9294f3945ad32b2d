"""Conversations: open one, take a customer message through the dialogue, read, wait, close.

A turn is one version-guarded write of the conversation: the customer's message (sealed and
masked), the assistant's reply, the dialogue state, the Idempotency-Key's record and the
turn's events. A hand-off is queued (its own document, id derived from the conversation and
its number, so a retry finds it) before that write.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import replace
from typing import Any

from zerocontact.assistant import events, metrics
from zerocontact.assistant.domain import dialogue as dlg
from zerocontact.assistant.domain.errors import (
    ConversationClosed,
    ConversationNotFound,
    IdempotencyKeyReused,
)
from zerocontact.assistant.handlers.actions import ActionResult, Turn, confirm, options_for, perform
from zerocontact.assistant.handlers.context import (
    AssistantDeps,
    Said,
    derived_id,
    message_doc,
    safe,
    utc_now,
)
from zerocontact.assistant.repository import (
    CONVERSATIONS,
    HANDOFFS,
    ConcurrentUpdate,
    dialogue_document,
    dialogue_of,
    message_key,
)
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import Conflict
from zerocontact.platform.outbox import OutboxEvent

log = logging.getLogger(__name__)

__all__ = [
    "ConversationBusy",
    "close",
    "messages_after",
    "owned",
    "send",
    "start",
]

_ATTEMPTS = 3


class ConversationBusy(Conflict):
    """Another message of the same conversation was being answered; send again."""

    code = "conversation_busy"


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def owned(doc: dict[str, Any] | None, party_id: str, conversation_id: str) -> dict[str, Any]:
    """The conversation if it is ``party_id``'s; otherwise not found (existence never leaks)."""
    if doc is None or doc.get("party_id") != party_id:
        raise ConversationNotFound(f"conversation {conversation_id} does not exist")
    return doc


async def start(
    deps: AssistantDeps, *, party_id: str, channel: str, partner_id: str | None, key: str
) -> dict[str, Any]:
    """Open a conversation (the same key opens it once: its id is derived from the key)."""
    conversation_id = derived_id("conversation", party_id, key)
    now = utc_now()
    doc: dict[str, Any] = {
        "_id": conversation_id,
        "party_id": party_id,
        "channel": channel,
        "partner_id": partner_id,
        "state": "open",
        "language": "zh",
        "started_at": now,
        "updated_at": now,
        "seq": 0,
        "turns": 0,
        "handoffs": 0,
        "handoff_id": None,
        "messages": {},
        "dialogue": dialogue_document(dlg.DialogueState()),
        "requests": {},
        "fingerprint": _fingerprint(channel, partner_id or ""),
    }
    event = events.conversation_started(
        deps.topic, conversation_id, party_id, channel, partner_id or "", now
    )
    if await deps.repo.insert_conversation(doc, [event]):
        deps.relay.nudge(CONVERSATIONS, conversation_id)
        return {**doc, "version": 1}  # as stored (the outbox fields are never read back)
    stored = owned(await deps.repo.conversation(conversation_id), party_id, conversation_id)
    if stored.get("fingerprint") != doc["fingerprint"]:
        raise IdempotencyKeyReused("this Idempotency-Key opened a different conversation")
    return stored


async def send(
    deps: AssistantDeps,
    *,
    conversation_id: str,
    principal: Principal,
    token: str,
    text: str,
    key: str,
) -> tuple[dict[str, Any], int, int]:
    """Answer one customer message; returns the conversation after it and the numbers of the
    turn's first and last message. A retry with the same key returns the first answer."""
    started = time.perf_counter()
    fingerprint = _fingerprint(text)
    for _ in range(_ATTEMPTS):
        with metrics.phase("read"):
            found = await deps.repo.conversation(conversation_id)
        doc = owned(found, principal.subject, conversation_id)
        done = (doc.get("requests") or {}).get(key)
        if done is not None:
            if done["fingerprint"] != fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used for another message")
            return doc, int(done["first"]), int(done["last"])
        if doc["state"] != "open":
            raise ConversationClosed(f"conversation {conversation_id} is closed")
        try:
            after, first, last = await _turn(deps, doc, principal, token, text, key, fingerprint)
        except ConcurrentUpdate:
            continue
        metrics.ANSWER_SECONDS.observe(time.perf_counter() - started)
        return after, first, last
    raise ConversationBusy("another message of this conversation was being answered; send again")


async def _turn(
    deps: AssistantDeps,
    doc: dict[str, Any],
    principal: Principal,
    token: str,
    text: str,
    key: str,
    fingerprint: str,
) -> tuple[dict[str, Any], int, int]:
    """One attempt at a turn (the conversation after it, the numbers of its first and last
    message); ``ConcurrentUpdate`` when another write came first."""
    conversation_id, party_id = str(doc["_id"]), str(doc["party_id"])
    now = utc_now()
    state = dialogue_of(doc.get("dialogue"))
    with metrics.phase("understand"):
        understanding = deps.understander.understand(text)
    decided = time.perf_counter()
    language = _language(text, understanding.language, str(doc["language"]))
    understood = dlg.Understood(
        understanding.intent, float(understanding.confidence), dict(understanding.slots)
    )
    step, after = dlg.next_step(state, understood, text, deps.policy)
    turn = Turn(principal, token, language, conversation_id, key)
    seq = int(doc["seq"])
    turn_no = int(doc["turns"]) + 1
    out: list[OutboxEvent] = []
    changes: dict[str, Any] = {}
    said: Said | None = None
    action: ActionResult | None = None
    handoff_id: str | None = None

    if isinstance(step, dlg.ToHuman):
        said = None
    elif isinstance(step, dlg.Answer):
        reply = deps.understander.compose(understanding)
        said = Said(
            "answer",
            reply.text,
            blocked=bool(reply.blocked),
            intent=reply.intent,
            article_id=reply.article_id,
            confidence=float(reply.confidence),
        )
        if reply.blocked:
            metrics.BLOCKED.labels("answer").inc()
    elif isinstance(step, dlg.Clarify):
        said = safe("clarify", "clarify", language)
    elif isinstance(step, dlg.Ask):
        options = await options_for(deps, step.slot, turn)
        said = safe("ask", f"ask.{step.slot}", language)
        if options:
            listed = "\n".join(f"{n}. {o.label}" for n, o in enumerate(options, 1))
            said = replace(
                said,
                text=said.text + "\n" + safe("ask", "ask.options", language, options=listed).text,
            )
        after = dlg.with_options(after, options)
    elif isinstance(step, dlg.Confirm):
        asked = await confirm(deps, step.intent, dict(step.slots), turn)
        if isinstance(asked, ActionResult):
            action, said = asked, asked.said
            after = replace(after, pending=None)
        else:
            said, slots = asked
            assert after.pending is not None
            after = replace(after, pending=replace(after.pending, slots=slots))
    elif isinstance(step, dlg.Act):
        action = await perform(deps, step.intent, dict(step.slots), turn)
        said = action.said
    elif isinstance(step, dlg.Declined):
        said = safe("action", "declined", language)
        if step.intent in dlg.ACTION_INTENTS:
            action = ActionResult(said, step.intent, "declined", _resource(step.slots))
    elif isinstance(step, dlg.HandOff):
        handoff_id = await _queue(deps, doc, step.reason, understood, turn_no, text, now)
        template = (
            "handoff.complaint" if step.reason is dlg.HandoffReason.COMPLAINT else "handoff.queued"
        )
        said = safe("handoff", template, language)
        changes["handoff_id"] = handoff_id
        changes["handoffs"] = int(doc["handoffs"]) + 1

    metrics.TURN_PHASE_SECONDS.labels("dialogue").observe(time.perf_counter() - decided)
    stored = time.perf_counter()
    seq += 1
    first = seq
    changes[f"messages.{message_key(seq)}"] = message_doc(
        deps,
        seq=seq,
        sender="customer",
        kind="question",
        text=text,
        at=now,
        conversation_id=conversation_id,
        intent=understood.intent,
        confidence=understood.confidence,
    )
    if said is not None:
        seq += 1
        changes[f"messages.{message_key(seq)}"] = message_doc(
            deps,
            seq=seq,
            sender="assistant",
            kind=said.kind,
            text=said.text,
            at=now,
            conversation_id=conversation_id,
            intent=said.intent or understood.intent,
            article_id=said.article_id or understanding.article_id,
            confidence=said.confidence if said.confidence is not None else understood.confidence,
            blocked=said.blocked,
        )
        out.append(
            events.question_answered(
                deps.topic,
                conversation_id,
                party_id,
                turn=turn_no,
                intent=understood.intent,
                article_id=said.article_id or understanding.article_id,
                confidence=understood.confidence,
                language=language,
                blocked=said.blocked,
                contained=handoff_id is None,
                at=now,
            )
        )
    if action is not None:
        out.append(
            events.action_performed(
                deps.topic,
                conversation_id,
                party_id,
                kind=action.kind,
                outcome=action.outcome,
                resource_id=action.resource_id,
                refusal=action.refusal,
                at=now,
            )
        )
    changes.update(
        {
            "seq": seq,
            "turns": turn_no,
            "language": language,
            "updated_at": now,
            "dialogue": dialogue_document(after),
            f"requests.{key}": {"fingerprint": fingerprint, "first": first, "last": seq},
        }
    )
    after_turn = await deps.repo.update_conversation(doc, changes=changes, events=out)
    metrics.TURN_PHASE_SECONDS.labels("seal and write").observe(time.perf_counter() - stored)
    deps.relay.nudge(CONVERSATIONS, conversation_id)
    deps.waits.changed(conversation_id)
    if said is not None and not isinstance(step, dlg.HandOff):
        metrics.ANSWERS.labels(understood.intent).inc()
    if action is not None:
        metrics.ACTIONS.labels(action.kind, action.outcome).inc()
    if handoff_id is not None:
        assert isinstance(step, dlg.HandOff)
        metrics.HANDOFFS.labels(str(step.reason)).inc()
        log.info(
            "conversation handed off",
            extra={
                "conversation_id": conversation_id,
                "handoff_id": handoff_id,
                "reason": str(step.reason),
            },
        )
    return after_turn, first, seq


_IDS = re.compile(r"[0-9a-fA-F-]{8,}|\d+")
_CJK = re.compile(r"[\u3400-\u9fff]")


def _language(text: str, understood: str, current: str) -> str:
    """The language to answer in: Chinese when the message has Chinese words (a pasted id's
    letters do not make it English); the understanding's otherwise; the conversation's when
    the message has no words of its own (a number, an id)."""
    words = _IDS.sub(" ", text)
    if _CJK.search(words):
        return "zh"
    if understood in ("zh", "en") and any(ch.isalpha() for ch in words):
        return understood
    return current


def _resource(slots: Any) -> str:
    for name in ("loan_id", "application_id", "batch_id", "device_id"):
        if slots.get(name):
            return str(slots[name])
    return ""


async def _queue(
    deps: AssistantDeps,
    doc: dict[str, Any],
    reason: dlg.HandoffReason,
    understood: dlg.Understood,
    turn_no: int,
    text: str,
    now: Any,
) -> str:
    """Put the conversation in the back office's queue (once per hand-off number)."""
    conversation_id, party_id = str(doc["_id"]), str(doc["party_id"])
    handoff_id = derived_id("handoff", conversation_id, str(int(doc["handoffs"]) + 1))
    complaint = reason is dlg.HandoffReason.COMPLAINT
    transcript = [
        {k: v for k, v in m.items() if k != "text_sealed"}
        for _, m in sorted((doc.get("messages") or {}).items())
    ]
    queued = {
        "_id": handoff_id,
        "conversation_id": conversation_id,
        "party_id": party_id,
        "state": "open",
        "reason": str(reason),
        "complaint": complaint,
        "intent": understood.intent,
        "confidence": understood.confidence,
        "requested_at": now,
        "operator_id": None,
        "claimed_at": None,
        "closed_at": None,
        "resolution": None,
        # What the back office sees first: the conversation so far, masked, with the message
        # that led here (masked too, never sealed: the queue holds no customer text in clear).
        "transcript": transcript,
        "trigger": message_doc(
            deps,
            seq=int(doc["seq"]) + 1,
            sender="system",
            kind="question",
            text=text,
            at=now,
            conversation_id=conversation_id,
        ),
    }
    out = [
        events.handoff_requested(
            deps.topic,
            handoff_id,
            conversation_id,
            party_id,
            reason=reason,
            intent=understood.intent,
            confidence=understood.confidence,
            turns=turn_no,
            at=now,
        )
    ]
    if complaint:
        out.append(events.complaint_raised(deps.topic, handoff_id, conversation_id, party_id, now))
    if await deps.repo.insert_handoff(queued, out):
        deps.relay.nudge(HANDOFFS, handoff_id)
    return handoff_id


async def messages_after(
    deps: AssistantDeps, *, conversation_id: str, party_id: str, after: int, wait_s: float
) -> dict[str, Any]:
    """The conversation once it has a message after ``after`` (or is closed), waiting at
    most ``wait_s``: an operator's reply written by any replica is seen within
    ``stream_poll_s``, one written here at once."""
    owned(await deps.repo.conversation(conversation_id), party_id, conversation_id)
    waited = await deps.waits.until(
        conversation_id,
        lambda: deps.repo.conversation(conversation_id),
        lambda doc: doc is None or int(doc["seq"]) > after or doc["state"] != "open",
        within_s=wait_s,
    )
    return owned(waited.value, party_id, conversation_id)


async def close(deps: AssistantDeps, *, conversation_id: str, party_id: str) -> dict[str, Any]:
    """End a conversation (closing again changes nothing)."""
    for _ in range(_ATTEMPTS):
        doc = owned(await deps.repo.conversation(conversation_id), party_id, conversation_id)
        if doc["state"] == "closed":
            return doc
        now = utc_now()
        handoffs = int(doc["handoffs"])
        event = events.conversation_closed(
            deps.topic,
            conversation_id,
            party_id,
            contained=handoffs == 0,
            turns=int(doc["turns"]),
            handoffs=handoffs,
            at=now,
        )
        try:
            after = await deps.repo.update_conversation(
                doc,
                changes={"state": "closed", "closed_at": now, "updated_at": now},
                events=[event],
            )
        except ConcurrentUpdate:
            continue
        deps.relay.nudge(CONVERSATIONS, conversation_id)
        deps.waits.changed(conversation_id)
        return after
    raise ConversationBusy("the conversation was being changed; close it again")
