"""Conversations and hand-offs in MongoDB: one document per aggregate, outbox inside.

A conversation's messages are a map keyed by their zero-padded number (``messages.000007``),
added with dotted ``$set`` in the version-guarded write that also stores the turn's events and
the dialogue state (FerretDB 1.24 has no positional updates; architecture.md, decision 3).
What the customer wrote is stored twice: AES-GCM encrypted (``text_sealed``) and masked
(``text``, what every reader is shown). The hand-off queue is its own collection; a claim is
one compare-and-set on ``state: open``, so two operators cannot both hold one hand-off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.assistant.domain.dialogue import DialogueState, Option, Pending
from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import (
    OUTBOX,
    PENDING,
    ConcurrentUpdate,
    OutboxEvent,
    ensure_outbox_index,
    insert_aggregate,
    update_aggregate,
)

__all__ = [
    "CONVERSATIONS",
    "HANDOFFS",
    "AssistantRepository",
    "ConcurrentUpdate",
    "dialogue_document",
    "dialogue_of",
    "message_key",
    "with_changes",
]

CONVERSATIONS = "conversations"
HANDOFFS = "handoffs"

INDEXES = [
    CollectionIndexes(
        HANDOFFS, (IndexModel([("state", ASCENDING), ("requested_at", ASCENDING)], name="queue"),)
    ),
]


def message_key(seq: int) -> str:
    """The map key of message ``seq`` (sorting the keys gives the order)."""
    return f"{seq:06d}"


def dialogue_document(state: DialogueState) -> Document:
    """The stored form of a dialogue state."""
    return asdict(state)


def dialogue_of(doc: Mapping[str, Any] | None) -> DialogueState:
    """A dialogue state from its stored form."""
    if not doc:
        return DialogueState()
    pending = doc.get("pending")
    return DialogueState(
        pending=Pending(
            intent=pending["intent"],
            slots=dict(pending["slots"]),
            awaiting=pending["awaiting"],
            slot=pending.get("slot"),
            options=tuple(Option(o["value"], o["label"]) for o in pending.get("options") or ()),
            asked=int(pending.get("asked", 1)),
        )
        if pending
        else None,
        failed_turns=int(doc.get("failed_turns", 0)),
        with_person=bool(doc.get("with_person", False)),
    )


class AssistantRepository:
    """The assistant's two collections."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self.conversations: AsyncCollection[Document] = db[CONVERSATIONS]
        self.handoffs: AsyncCollection[Document] = db[HANDOFFS]

    async def create_indexes(self) -> None:
        """The queue index and the outbox indexes of both collections."""
        await ensure_indexes(self._db, INDEXES)
        await ensure_outbox_index(self.conversations)
        await ensure_outbox_index(self.handoffs)

    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        """The collections whose documents carry outbox events."""
        return [self.conversations, self.handoffs]

    async def conversation(self, conversation_id: str) -> Document | None:
        """A conversation document, by ``_id``."""
        return await self.conversations.find_one({"_id": conversation_id}, {OUTBOX: 0})

    async def insert_conversation(self, doc: Document, events: Sequence[OutboxEvent]) -> bool:
        """Store a new conversation with its events; False when its id exists already."""
        return await insert_aggregate(self.conversations, doc, events)

    async def update_conversation(
        self,
        doc: Mapping[str, Any],
        *,
        changes: Document,
        events: Sequence[OutboxEvent],
    ) -> Document:
        """Apply ``changes`` if nobody wrote since ``doc`` was read (``ConcurrentUpdate``);
        returns the conversation as now stored, without reading it back (the write was guarded
        by ``doc``'s version, so ``doc`` with ``changes`` is what the database holds)."""
        await update_aggregate(
            self.conversations,
            doc["_id"],
            version=int(doc["version"]),
            changes=changes,
            events=events,
        )
        return with_changes(doc, {**changes, "version": int(doc["version"]) + 1})

    async def handoff(self, handoff_id: str) -> Document | None:
        """A hand-off document, by ``_id``."""
        return await self.handoffs.find_one({"_id": handoff_id}, {OUTBOX: 0})

    async def insert_handoff(self, doc: Document, events: Sequence[OutboxEvent]) -> bool:
        """Queue a hand-off with its events; False when its id exists already (a retry)."""
        return await insert_aggregate(self.handoffs, doc, events)

    async def queue(self, state: str, limit: int) -> list[Document]:
        """Hand-offs in ``state``, oldest first."""
        cursor = self.handoffs.find({"state": state}, {OUTBOX: 0}).sort("requested_at", 1)
        return [doc async for doc in cursor.limit(limit)]

    async def transition(
        self,
        handoff_id: str,
        *,
        expect: Mapping[str, Any],
        changes: Document,
        events: Sequence[OutboxEvent],
    ) -> tuple[Document | None, Document | None]:
        """Apply ``changes`` (and store ``events``) to a hand-off whose fields equal ``expect``.

        One version-guarded write: of two operators claiming the same open hand-off exactly
        one write matches. Returns (the document after, None) on success, or (None, the
        document as found) when it does not match ``expect`` (None, None: no such hand-off).
        """
        for _ in range(5):
            doc = await self.handoff(handoff_id)
            if doc is None:
                return None, None
            if any(doc.get(k) != v for k, v in expect.items()):
                return None, doc
            version = int(doc["version"])
            try:
                await update_aggregate(
                    self.handoffs, handoff_id, version=version, changes=changes, events=events
                )
            except ConcurrentUpdate:
                continue
            return {**doc, **changes, "version": version + 1}, None
        raise ConcurrentUpdate(handoff_id)

    async def pending_outbox(self) -> int:
        """Aggregates with unpublished events (for tests and the runbook)."""
        return await self.conversations.count_documents(
            {PENDING: True}
        ) + await self.handoffs.count_documents({PENDING: True})


def with_changes(doc: Mapping[str, Any], changes: Mapping[str, Any]) -> Document:
    """``doc`` after a ``$set`` of ``changes`` (dotted paths into sub-documents), as a copy."""
    out: Document = dict(doc)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = out
        for name in parents:
            child = dict(target.get(name) or {})
            target[name] = child
            target = child
        target[leaf] = value
    return out
