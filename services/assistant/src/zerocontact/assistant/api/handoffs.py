"""``/v1/handoffs``: the back office's queue (``X-Operator-Key`` and ``X-Operator-Id``).

List the hand-offs in a state, read one with its conversation (masked), claim it (exactly
one operator wins), reply to the customer (red-line checked; the customer's stream shows it)
and close it (the conversation goes back to the assistant).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from zerocontact.assistant.api.deps import Id, Operator, deps_of, operator_id, operator_key
from zerocontact.assistant.api.schemas import (
    CloseHandoff,
    HandoffList,
    HandoffView,
    MessageView,
    OperatorReply,
)
from zerocontact.assistant.api.views import handoff_view, messages
from zerocontact.assistant.handlers import handoffs
from zerocontact.platform.deps import IdempotencyKey

router = APIRouter(
    prefix="/v1/handoffs",
    tags=["back office"],
    dependencies=[Depends(operator_key), Depends(operator_id)],
)


@router.get("")
async def queue(
    request: Request,
    state: Annotated[Literal["open", "claimed", "closed"], Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HandoffList:
    """Hand-offs in ``state``, oldest first (each with its conversation, masked)."""
    deps = deps_of(request)
    docs = await handoffs.queue(deps, state=state, limit=limit)
    return HandoffList(
        handoffs=[
            handoff_view(d, await deps.repo.conversation(str(d["conversation_id"]))) for d in docs
        ]
    )


@router.get("/{handoff_id}")
async def read(handoff_id: Id, request: Request) -> HandoffView:
    """One hand-off with its conversation (masked)."""
    doc, conversation = await handoffs.view(deps_of(request), handoff_id)
    return handoff_view(doc, conversation)


@router.post("/{handoff_id}/claim")
async def claim(
    handoff_id: Id, key: IdempotencyKey, request: Request, who: Operator
) -> HandoffView:
    """Take the hand-off (409 ``handoff_already_claimed`` when another operator has it)."""
    del key  # a claim is idempotent by itself: claiming one's own again returns it
    deps = deps_of(request)
    doc = await handoffs.claim(deps, handoff_id=handoff_id, operator_id=who)
    return handoff_view(doc, await deps.repo.conversation(str(doc["conversation_id"])))


@router.post("/{handoff_id}/replies")
async def reply(
    handoff_id: Id, body: OperatorReply, key: IdempotencyKey, request: Request, who: Operator
) -> MessageView:
    """Write to the customer (422 ``unsafe_reply`` naming the red lines crossed: nothing sent)."""
    conversation, seq = await handoffs.reply(
        deps_of(request), handoff_id=handoff_id, operator_id=who, text=body.text, key=key
    )
    return messages(conversation, after=seq - 1, upto=seq)[0]


@router.post("/{handoff_id}/closure")
async def close(
    handoff_id: Id, body: CloseHandoff, key: IdempotencyKey, request: Request, who: Operator
) -> HandoffView:
    """Close the hand-off; the conversation is the assistant's again."""
    del key  # closing is idempotent by itself
    deps = deps_of(request)
    doc = await handoffs.close(
        deps, handoff_id=handoff_id, operator_id=who, resolution=body.resolution
    )
    return handoff_view(doc, await deps.repo.conversation(str(doc["conversation_id"])))
