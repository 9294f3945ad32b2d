"""Stored documents as the API shows them (masked texts only; nothing sealed leaves)."""

from __future__ import annotations

from typing import Any

from zerocontact.assistant.api.schemas import (
    ConversationView,
    HandoffRef,
    HandoffView,
    MessagesView,
    MessageView,
    OptionView,
    PendingView,
    TurnView,
)
from zerocontact.assistant.repository import dialogue_of


def message_view(m: dict[str, Any]) -> MessageView:
    """One stored message."""
    return MessageView(
        seq=int(m["seq"]),
        sender=m["sender"],
        kind=m["kind"],
        text=m["text"],
        at=m["at"],
        intent=m.get("intent"),
        article_id=m.get("article_id"),
        confidence=m.get("confidence"),
        blocked=bool(m.get("blocked", False)),
    )


def messages(doc: dict[str, Any], *, after: int = 0, upto: int | None = None) -> list[MessageView]:
    """The conversation's messages numbered after ``after`` (up to ``upto``), in order."""
    out = []
    for _, m in sorted((doc.get("messages") or {}).items()):
        seq = int(m["seq"])
        if seq > after and (upto is None or seq <= upto):
            out.append(message_view(m))
    return out


def pending_view(doc: dict[str, Any]) -> PendingView | None:
    """What the conversation waits for, if anything."""
    pending = dialogue_of(doc.get("dialogue")).pending
    if pending is None:
        return None
    return PendingView(
        intent=pending.intent,
        awaiting="confirmation" if pending.awaiting == "confirmation" else "slot",
        slot=pending.slot,
        options=[OptionView(value=o.value, label=o.label) for o in pending.options],
    )


def handoff_ref(doc: dict[str, Any], handoff: dict[str, Any] | None) -> HandoffRef | None:
    """The conversation's latest hand-off."""
    if handoff is None or doc.get("handoff_id") is None:
        return None
    return HandoffRef(handoff_id=str(handoff["_id"]), state=handoff["state"])


def conversation_view(doc: dict[str, Any], handoff: dict[str, Any] | None) -> ConversationView:
    """A conversation with all its messages."""
    return ConversationView(
        conversation_id=str(doc["_id"]),
        party_id=str(doc["party_id"]),
        state=doc["state"],
        channel=doc["channel"],
        partner_id=doc.get("partner_id"),
        with_person=dialogue_of(doc.get("dialogue")).with_person,
        started_at=doc["started_at"],
        pending=pending_view(doc),
        handoff=handoff_ref(doc, handoff),
        messages=messages(doc),
    )


def turn_view(
    doc: dict[str, Any], first: int, last: int, handoff: dict[str, Any] | None
) -> TurnView:
    """One turn: its messages and the assistant's reply (its last message, when not the
    customer's own)."""
    shown = messages(doc, after=first - 1, upto=last)
    reply = shown[-1] if shown and shown[-1].sender != "customer" else None
    return TurnView(
        conversation_id=str(doc["_id"]),
        state=doc["state"],
        with_person=dialogue_of(doc.get("dialogue")).with_person,
        messages=shown,
        reply=reply,
        pending=pending_view(doc),
        handoff=handoff_ref(doc, handoff),
    )


def messages_view(doc: dict[str, Any], after: int) -> MessagesView:
    """Messages after ``after``."""
    return MessagesView(
        conversation_id=str(doc["_id"]),
        state=doc["state"],
        with_person=dialogue_of(doc.get("dialogue")).with_person,
        messages=messages(doc, after=after),
        last_seq=int(doc["seq"]),
    )


def handoff_view(doc: dict[str, Any], conversation: dict[str, Any] | None) -> HandoffView:
    """A hand-off with the whole conversation so far (masked)."""
    transcript = (
        messages(conversation)
        if conversation is not None
        else [message_view(m) for m in doc.get("transcript") or []]
    )
    return HandoffView(
        handoff_id=str(doc["_id"]),
        conversation_id=str(doc["conversation_id"]),
        party_id=str(doc["party_id"]),
        state=doc["state"],
        reason=doc["reason"],
        complaint=bool(doc.get("complaint")),
        intent=str(doc.get("intent") or ""),
        confidence=float(doc.get("confidence") or 0.0),
        requested_at=doc["requested_at"],
        operator_id=doc.get("operator_id"),
        claimed_at=doc.get("claimed_at"),
        closed_at=doc.get("closed_at"),
        resolution=doc.get("resolution"),
        transcript=transcript,
    )
