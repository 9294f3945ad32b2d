"""AssistantService: the customer-service assistant for a partner's parties, with each party's
own access token (the assistant acts with it; the partner's credential never reaches it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from zerocontact.gateway import convert
from zerocontact.gateway.convert import require_uuid
from zerocontact.gateway.errors import invalid
from zerocontact.gateway.guard import Caller, Gateway, streaming, unary
from zerocontact.gateway.servicers.scopes import ASSISTANT_READ, ASSISTANT_WRITE
from zerocontact.gateway.v1 import assistant_pb2, assistant_pb2_grpc

MAX_TEXT = 1000
# One long poll of the assistant's messages (it answers as soon as one is written).
POLL_WAIT_S = 20.0


class AssistantServicer(assistant_pb2_grpc.AssistantServiceServicer):
    """Conversations of a partner's parties with the assistant."""

    SERVICE = "AssistantService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @unary(ASSISTANT_WRITE, mutating=True, response=assistant_pb2.StartConversationResponse)
    async def StartConversation(
        self, request: assistant_pb2.StartConversationRequest, caller: Caller
    ) -> assistant_pb2.StartConversationResponse:
        """Open a conversation for a party of the partner, with that party's token."""
        party_id = require_uuid(request.party_id, "party_id")
        await self.gateway.require_owner("party", party_id, caller.partner)
        caller.require_token()
        body = {"channel": "partner", "partner_id": caller.partner.partner_id, "party_id": party_id}
        view = await self.gateway.backends.assistant.request(
            "POST", "/v1/conversations", caller.call(), body=body
        )
        await self.gateway.record_owner("conversation", view["conversation_id"], caller.partner)
        return assistant_pb2.StartConversationResponse(conversation=convert.conversation(view))

    @unary(ASSISTANT_WRITE, mutating=True, response=assistant_pb2.SendMessageResponse)
    async def SendMessage(
        self, request: assistant_pb2.SendMessageRequest, caller: Caller
    ) -> assistant_pb2.SendMessageResponse:
        """The party's message; the assistant's answer, question or confirmation back."""
        conversation_id = require_uuid(request.conversation_id, "conversation_id")
        if not request.text.strip():
            raise invalid("text", "required")
        if len(request.text) > MAX_TEXT:
            raise invalid("text", f"at most {MAX_TEXT} characters")
        await self.gateway.require_owner("conversation", conversation_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.assistant.request(
            "POST",
            f"/v1/conversations/{conversation_id}/messages",
            caller.call(),
            body={"text": request.text},
        )
        return convert.assistant_turn(view)

    async def _conversation(self, conversation_id: str, caller: Caller) -> dict[str, Any]:
        view: dict[str, Any] = await self.gateway.backends.assistant.request(
            "GET", f"/v1/conversations/{conversation_id}", caller.call()
        )
        return view

    @unary(ASSISTANT_READ)
    async def GetConversation(
        self, request: assistant_pb2.GetConversationRequest, caller: Caller
    ) -> assistant_pb2.GetConversationResponse:
        """A conversation the partner opened."""
        conversation_id = require_uuid(request.conversation_id, "conversation_id")
        await self.gateway.require_owner("conversation", conversation_id, caller.partner)
        caller.require_token()
        view = await self._conversation(conversation_id, caller)
        return assistant_pb2.GetConversationResponse(conversation=convert.conversation(view))

    @streaming(ASSISTANT_READ)
    async def WatchConversation(
        self, request: assistant_pb2.WatchConversationRequest, caller: Caller
    ) -> AsyncIterator[assistant_pb2.WatchConversationResponse]:
        """New messages (the assistant's and a person's) as the assistant writes them, by long
        polls of its messages; the stream ends after the conversation's closing message."""
        conversation_id = require_uuid(request.conversation_id, "conversation_id")
        if request.after_seq < 0:
            raise invalid("after_seq", "must be 0 or more")
        await self.gateway.require_owner("conversation", conversation_id, caller.partner)
        caller.require_token()
        seen = request.after_seq
        while (left := caller.remaining() - 1.0) > 0:
            wait_s = min(POLL_WAIT_S, left)
            view = await self.gateway.backends.assistant.request(
                "GET",
                f"/v1/conversations/{conversation_id}/messages?after={seen}&wait_s={wait_s:.1f}",
                caller.call(),
            )
            closed = view["state"] != "open"
            messages = view.get("messages") or []
            for i, message in enumerate(messages):
                seen = max(seen, int(message["seq"]))
                yield assistant_pb2.WatchConversationResponse(
                    conversation_id=conversation_id,
                    message=convert.assistant_message(message),
                    closed=closed and i == len(messages) - 1,
                )
            if closed:
                if not messages:
                    yield assistant_pb2.WatchConversationResponse(
                        conversation_id=conversation_id, closed=True
                    )
                return

    @unary(ASSISTANT_WRITE, mutating=True, response=assistant_pb2.CloseConversationResponse)
    async def CloseConversation(
        self, request: assistant_pb2.CloseConversationRequest, caller: Caller
    ) -> assistant_pb2.CloseConversationResponse:
        """End the conversation."""
        conversation_id = require_uuid(request.conversation_id, "conversation_id")
        await self.gateway.require_owner("conversation", conversation_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.assistant.request(
            "POST", f"/v1/conversations/{conversation_id}/closure", caller.call()
        )
        return assistant_pb2.CloseConversationResponse(conversation=convert.conversation(view))
