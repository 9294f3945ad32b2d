"""Request and response bodies of the assistant's HTTP API (the contract, docs/assistant.md).

Texts in responses are masked: ID, card and phone numbers show only what ``mask_personal_data``
keeps, for the customer as for the back office.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Sender = Literal["customer", "assistant", "operator", "system"]
MessageKind = Literal[
    "question",  # the customer's message
    "answer",  # an answer from the knowledge base (or a greeting, thanks)
    "ask",  # the assistant asks for something it needs (a slot)
    "confirmation",  # the assistant asks for an explicit yes before moving money
    "action",  # the result of an action done for the customer
    "clarify",  # not understood: please say it differently
    "handoff",  # the conversation went to a person
    "operator",  # a person's reply
    "notice",  # the conversation's state changed (hand-off closed, conversation closed)
]
PartnerId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
OperatorText = Annotated[str, Field(min_length=1, max_length=2000)]


class Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class StartConversation(Body):
    """Open a conversation (``POST /v1/conversations``)."""

    channel: Literal["app", "partner"] = "app"
    partner_id: PartnerId | None = Field(
        default=None, description="the partner whose app embeds the assistant (channel partner)"
    )


class SendMessage(Body):
    """One customer message (``POST /v1/conversations/{id}/messages``)."""

    text: str = Field(min_length=1, max_length=1000)


class OperatorReply(Body):
    """An operator's reply (``POST /v1/handoffs/{id}/replies``)."""

    text: OperatorText


class CloseHandoff(Body):
    """How an operator closes a hand-off (``POST /v1/handoffs/{id}/closure``)."""

    resolution: Literal["resolved", "unresolved"]


class OptionView(BaseModel):
    """One choice offered for a slot; answering with ``value`` or its number chooses it."""

    value: str
    label: str


class PendingView(BaseModel):
    """What the assistant waits for before it can act."""

    intent: str
    awaiting: Literal["slot", "confirmation"]
    slot: str | None
    options: list[OptionView]


class MessageView(BaseModel):
    """One message of a conversation (``seq`` grows by one per message)."""

    seq: int
    sender: Sender
    kind: MessageKind
    text: str
    at: datetime
    intent: str | None = None
    article_id: str | None = None
    confidence: float | None = None
    blocked: bool = False


class HandoffRef(BaseModel):
    """The conversation's current hand-off."""

    handoff_id: str
    state: Literal["open", "claimed", "closed"]


class ConversationView(BaseModel):
    """A conversation with its messages."""

    conversation_id: str
    party_id: str
    state: Literal["open", "closed"]
    channel: Literal["app", "partner"]
    partner_id: str | None
    with_person: bool
    started_at: datetime
    pending: PendingView | None
    handoff: HandoffRef | None
    messages: list[MessageView]


class TurnView(BaseModel):
    """What one customer message led to: the message, the assistant's replies (none while a
    person holds the conversation), what it waits for, and the hand-off if one was opened."""

    conversation_id: str
    state: Literal["open", "closed"]
    with_person: bool
    messages: list[MessageView]
    reply: MessageView | None
    pending: PendingView | None
    handoff: HandoffRef | None


class MessagesView(BaseModel):
    """Messages after ``after`` (a long poll returns as soon as there is one)."""

    conversation_id: str
    state: Literal["open", "closed"]
    with_person: bool
    messages: list[MessageView]
    last_seq: int


class HandoffView(BaseModel):
    """A hand-off in the back office's queue, with the conversation (masked)."""

    handoff_id: str
    conversation_id: str
    party_id: str
    state: Literal["open", "closed", "claimed"]
    reason: Literal["customer_request", "low_confidence", "failed_turns", "complaint"]
    complaint: bool
    intent: str
    confidence: float
    requested_at: datetime
    operator_id: str | None
    claimed_at: datetime | None
    closed_at: datetime | None
    resolution: Literal["resolved", "unresolved"] | None
    transcript: list[MessageView]


class HandoffList(BaseModel):
    """Hand-offs in one state, oldest first."""

    handoffs: list[HandoffView]
