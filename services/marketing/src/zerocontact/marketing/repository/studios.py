"""Live studios and their sessions (a session's statistics and reach live in its document)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from zerocontact.marketing.repository.store import Store
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxEvent, insert_aggregate, update_aggregate


class StudioStore(Store):
    """Reads and writes of studios and sessions."""

    async def put_studio(self, doc: Document) -> None:
        """Add or replace a studio."""
        await self.studios.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def studio_exists(self, studio_id: str) -> bool:
        """Whether the studio is defined."""
        return await self.studios.find_one({"_id": studio_id}) is not None

    async def insert_session(self, doc: Document) -> bool:
        """A new session; False if its id is taken."""
        return await insert_aggregate(self.sessions, doc, [])

    async def session(self, session_id: str) -> Document | None:
        """A session document, or None."""
        return await self.sessions.find_one({"_id": session_id})

    async def update_session(
        self,
        session_id: str,
        *,
        version: int,
        changes: Document,
        events: Sequence[OutboxEvent],
    ) -> None:
        """Change a session read at ``version`` with its events (``ConcurrentUpdate``
        otherwise)."""
        await update_aggregate(
            self.sessions, session_id, version=version, changes=changes, events=events
        )

    async def reach_of(self, studio_id: str) -> AsyncIterator[Document]:
        """The ``reach`` (local day → parties) of each of a studio's sessions."""
        async for s in self.sessions.find({"studio_id": studio_id}, {"reach": 1}):
            yield s.get("reach") or {}
