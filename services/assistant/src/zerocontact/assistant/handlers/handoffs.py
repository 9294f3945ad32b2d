"""The back office's queue: claim a hand-off (one operator wins), reply, close.

A reply is written into the conversation (the customer's stream shows it) with its
HandoffReplied event, after the red-line check: a reply that crosses a line is refused
(422 ``unsafe_reply`` naming the rules) and nothing is sent. Closing gives the conversation
back to the assistant; closing a complaint as resolved emits ComplaintResolved.
"""

from __future__ import annotations

from typing import Any

from zerocontact.assistant import events, metrics
from zerocontact.assistant.domain.dialogue import DialogueState
from zerocontact.assistant.domain.errors import (
    HandoffAlreadyClaimed,
    HandoffClosedAlready,
    HandoffNotClaimed,
    HandoffNotFound,
    IdempotencyKeyReused,
    NotYourHandoff,
    UnsafeReply,
)
from zerocontact.assistant.handlers.context import AssistantDeps, message_doc, safe, utc_now
from zerocontact.assistant.handlers.conversations import ConversationBusy, _fingerprint
from zerocontact.assistant.repository import (
    CONVERSATIONS,
    HANDOFFS,
    ConcurrentUpdate,
    dialogue_document,
    dialogue_of,
    message_key,
)
from zerocontact.platform.compliance import check_text

__all__ = ["claim", "close", "queue", "reply", "view"]


async def view(
    deps: AssistantDeps, handoff_id: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A hand-off and its conversation (for the masked transcript)."""
    doc = await deps.repo.handoff(handoff_id)
    if doc is None:
        raise HandoffNotFound(f"hand-off {handoff_id} does not exist")
    return doc, await deps.repo.conversation(str(doc["conversation_id"]))


async def queue(deps: AssistantDeps, *, state: str, limit: int) -> list[dict[str, Any]]:
    """Hand-offs in ``state``, oldest first."""
    return await deps.repo.queue(state, limit)


def _refusal(doc: dict[str, Any] | None, handoff_id: str, operator_id: str) -> Exception:
    if doc is None:
        return HandoffNotFound(f"hand-off {handoff_id} does not exist")
    if doc["state"] == "closed":
        return HandoffClosedAlready(f"hand-off {handoff_id} is closed")
    if doc["state"] == "open":
        return HandoffNotClaimed(f"claim hand-off {handoff_id} first")
    if doc.get("operator_id") != operator_id:
        return NotYourHandoff(f"hand-off {handoff_id} is held by another operator")
    return HandoffAlreadyClaimed(f"hand-off {handoff_id} was claimed")


async def claim(deps: AssistantDeps, *, handoff_id: str, operator_id: str) -> dict[str, Any]:
    """Take an open hand-off; claiming one's own again returns it; another's is a 409."""
    now = utc_now()
    current = await deps.repo.handoff(handoff_id)
    if current is None:
        raise HandoffNotFound(f"hand-off {handoff_id} does not exist")
    event = events.handoff_claimed(
        deps.topic,
        handoff_id,
        str(current["conversation_id"]),
        str(current["party_id"]),
        operator_id,
        now,
    )
    done, found = await deps.repo.transition(
        handoff_id,
        expect={"state": "open"},
        changes={"state": "claimed", "operator_id": operator_id, "claimed_at": now},
        events=[event],
    )
    if done is not None:
        deps.relay.nudge(HANDOFFS, handoff_id)
        return done
    if found is not None and found["state"] == "claimed" and found["operator_id"] == operator_id:
        return found
    if found is not None and found["state"] == "claimed":
        raise HandoffAlreadyClaimed(f"hand-off {handoff_id} was claimed by another operator")
    raise _refusal(found, handoff_id, operator_id)


async def _held(deps: AssistantDeps, handoff_id: str, operator_id: str) -> dict[str, Any]:
    doc = await deps.repo.handoff(handoff_id)
    if doc is None or doc["state"] != "claimed" or doc.get("operator_id") != operator_id:
        raise _refusal(doc, handoff_id, operator_id)
    return doc


async def reply(
    deps: AssistantDeps, *, handoff_id: str, operator_id: str, text: str, key: str
) -> tuple[dict[str, Any], int]:
    """Write an operator's reply into the conversation; returns it and the message's number."""
    handoff = await _held(deps, handoff_id, operator_id)
    findings = check_text(text)
    if findings:
        metrics.OPERATOR_REFUSED.inc()
        raise UnsafeReply(
            "the reply crosses a red line; nothing was sent",
            rules=sorted({f.rule for f in findings}),
            terms=sorted({f.text for f in findings if f.text}),
        )
    conversation_id = str(handoff["conversation_id"])
    request_key = f"op-{key}"
    fingerprint = _fingerprint(operator_id, handoff_id, text)
    for _ in range(3):
        doc = await deps.repo.conversation(conversation_id)
        if doc is None:
            raise HandoffNotFound(f"hand-off {handoff_id} has no conversation")
        done = (doc.get("requests") or {}).get(request_key)
        if done is not None:
            if done["fingerprint"] != fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used for another reply")
            return doc, int(done["first"])
        now = utc_now()
        seq = int(doc["seq"]) + 1
        changes = {
            f"messages.{message_key(seq)}": message_doc(
                deps,
                seq=seq,
                sender="operator",
                kind="operator",
                text=text,
                at=now,
                conversation_id=conversation_id,
                operator_id=operator_id,
            ),
            "seq": seq,
            "updated_at": now,
            f"requests.{request_key}": {"fingerprint": fingerprint, "first": seq, "last": seq},
        }
        event = events.handoff_replied(
            deps.topic, handoff_id, conversation_id, str(doc["party_id"]), operator_id, now
        )
        try:
            after = await deps.repo.update_conversation(doc, changes=changes, events=[event])
        except ConcurrentUpdate:
            continue
        deps.relay.nudge(CONVERSATIONS, conversation_id)
        deps.waits.changed(conversation_id)
        return after, seq
    raise ConversationBusy("the conversation was being changed; send the reply again")


async def close(
    deps: AssistantDeps, *, handoff_id: str, operator_id: str, resolution: str
) -> dict[str, Any]:
    """Close a hand-off the operator holds and give the conversation back to the assistant;
    closing a closed one of one's own again returns it."""
    current = await deps.repo.handoff(handoff_id)
    if (
        current is not None
        and current["state"] == "closed"
        and current.get("operator_id") == operator_id
    ):
        await _release(deps, current)
        return current
    held = await _held(deps, handoff_id, operator_id)
    now = utc_now()
    conversation_id, party_id = str(held["conversation_id"]), str(held["party_id"])
    out = [
        events.handoff_closed(
            deps.topic, handoff_id, conversation_id, party_id, operator_id, resolution, now
        )
    ]
    if held.get("complaint") and resolution == "resolved":
        out.append(
            events.complaint_resolved(
                deps.topic, handoff_id, conversation_id, party_id, operator_id, now
            )
        )
    done, found = await deps.repo.transition(
        handoff_id,
        expect={"state": "claimed", "operator_id": operator_id},
        changes={"state": "closed", "resolution": resolution, "closed_at": now},
        events=out,
    )
    if done is None:
        raise _refusal(found, handoff_id, operator_id)
    deps.relay.nudge(HANDOFFS, handoff_id)
    await _release(deps, done)
    return done


async def _release(deps: AssistantDeps, handoff: dict[str, Any]) -> None:
    """The conversation is the assistant's again (once: a later hand-off is left alone)."""
    conversation_id = str(handoff["conversation_id"])
    for _ in range(3):
        doc = await deps.repo.conversation(conversation_id)
        if doc is None or doc.get("handoff_id") != handoff["_id"]:
            return
        state = dialogue_of(doc.get("dialogue"))
        if not state.with_person:
            return
        now = utc_now()
        seq = int(doc["seq"]) + 1
        notice = safe("notice", "handoff.closed", str(doc.get("language") or "zh"))
        changes = {
            f"messages.{message_key(seq)}": message_doc(
                deps,
                seq=seq,
                sender="system",
                kind="notice",
                text=notice.text,
                at=now,
                conversation_id=conversation_id,
            ),
            "seq": seq,
            "updated_at": now,
            "dialogue": dialogue_document(DialogueState()),
        }
        try:
            await deps.repo.update_conversation(doc, changes=changes, events=[])
        except ConcurrentUpdate:
            continue
        deps.waits.changed(conversation_id)
        return
