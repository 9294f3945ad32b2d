"""``/v1/conversations``: the customer's side (identity's access token).

Open a conversation, send a message (the answer, or the question the assistant needs
answered, or the confirmation it waits for), read it, and follow its new messages — a long
poll (``GET .../messages?after=N&wait_s=S``) or an event stream (``GET .../stream``, SSE) —
which is how a person's replies reach the customer. Another party's conversation is a 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from zerocontact.assistant.api.deps import Id, deps_of
from zerocontact.assistant.api.schemas import (
    ConversationView,
    MessagesView,
    SendMessage,
    StartConversation,
    TurnView,
)
from zerocontact.assistant.api.views import (
    conversation_view,
    message_view,
    messages_view,
    turn_view,
)
from zerocontact.assistant.handlers import AssistantDeps, conversations
from zerocontact.platform.deps import BearerToken, Caller, IdempotencyKey

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


async def _handoff(deps: AssistantDeps, doc: dict[str, object]) -> dict[str, object] | None:
    handoff_id = doc.get("handoff_id")
    return await deps.repo.handoff(str(handoff_id)) if handoff_id else None


@router.post("", status_code=201)
async def start(
    body: StartConversation, key: IdempotencyKey, request: Request, who: Caller
) -> ConversationView:
    """Open a conversation with the assistant (the same key opens it once)."""
    deps = deps_of(request)
    doc = await conversations.start(
        deps,
        party_id=who.subject,
        channel=body.channel,
        partner_id=body.partner_id,
        key=key,
    )
    return conversation_view(doc, None)


@router.get("/{conversation_id}")
async def read(conversation_id: Id, request: Request, who: Caller) -> ConversationView:
    """The conversation with every message (masked)."""
    deps = deps_of(request)
    doc = conversations.owned(
        await deps.repo.conversation(conversation_id), who.subject, conversation_id
    )
    return conversation_view(doc, await _handoff(deps, doc))


@router.post("/{conversation_id}/messages")
async def send(
    conversation_id: Id,
    body: SendMessage,
    key: IdempotencyKey,
    request: Request,
    who: Caller,
    token: BearerToken,
) -> TurnView:
    """Send a message; the answer comes back at once (a person's replies come later, on the
    stream). Actions are done with this request's bearer token."""
    deps = deps_of(request)
    doc, first, last = await conversations.send(
        deps,
        conversation_id=conversation_id,
        principal=who,
        token=token,
        text=body.text,
        key=key,
    )
    return turn_view(doc, first, last, await _handoff(deps, doc))


@router.get("/{conversation_id}/messages")
async def poll(
    conversation_id: Id,
    request: Request,
    who: Caller,
    after: Annotated[int, Query(ge=0, description="the last message number already seen")] = 0,
    wait_s: Annotated[
        float, Query(ge=0, le=60, description="wait up to this long for a new message")
    ] = 0,
) -> MessagesView:
    """Messages after ``after``; with ``wait_s`` a long poll that returns as soon as one
    arrives (or the conversation closes)."""
    deps = deps_of(request)
    doc = await conversations.messages_after(
        deps,
        conversation_id=conversation_id,
        party_id=who.subject,
        after=after,
        wait_s=min(wait_s, deps.settings.max_wait_s),
    )
    return messages_view(doc, after)


@router.get(
    "/{conversation_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    conversation_id: Id,
    request: Request,
    who: Caller,
    after: Annotated[int, Query(ge=0, description="the last message number already seen")] = 0,
) -> StreamingResponse:
    """Server-sent events: one ``message`` event per new message (``id`` = its number, so a
    reconnect sends ``after``), ``closed`` when the conversation ends; a keep-alive comment
    meanwhile. The stream ends after ``stream_max_s``; reconnect with the last id."""
    deps = deps_of(request)
    doc = conversations.owned(
        await deps.repo.conversation(conversation_id), who.subject, conversation_id
    )
    settings = deps.settings

    async def events() -> AsyncIterator[str]:
        seen = after
        loop = asyncio.get_running_loop()
        ends = loop.time() + settings.stream_max_s
        current = doc
        while True:
            for m in sorted((current.get("messages") or {}).values(), key=lambda m: m["seq"]):
                if int(m["seq"]) > seen:
                    seen = int(m["seq"])
                    body = message_view(m).model_dump_json()
                    yield f"id: {seen}\nevent: message\ndata: {body}\n\n"
            if current["state"] != "open":
                yield f"event: closed\ndata: {json.dumps({'conversation_id': conversation_id})}\n\n"
                return
            remaining = ends - loop.time()
            if remaining <= 0 or await request.is_disconnected():
                return
            current = await conversations.messages_after(
                deps,
                conversation_id=conversation_id,
                party_id=who.subject,
                after=seen,
                wait_s=min(settings.stream_keepalive_s, remaining),
            )
            if int(current["seq"]) <= seen and current["state"] == "open":
                yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{conversation_id}/closure")
async def close(
    conversation_id: Id, key: IdempotencyKey, request: Request, who: Caller
) -> ConversationView:
    """End the conversation (ConversationClosed says whether a person was needed)."""
    del key  # closing is idempotent by itself; the key is taken as on every mutating call
    deps = deps_of(request)
    doc = await conversations.close(deps, conversation_id=conversation_id, party_id=who.subject)
    return conversation_view(doc, await _handoff(deps, doc))
