"""Lifespan wiring of the trust services inside identity (called from identity's app.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.tokens import decode_b64url
from zerocontact.identity.trust import face
from zerocontact.identity.trust.handlers import TrustContext, publish_head
from zerocontact.identity.trust.log import MerkleLog
from zerocontact.identity.trust.repository import TrustRepository
from zerocontact.platform.outbox import ensure_outbox_index

log = logging.getLogger(__name__)


def trust_log_key(seed: SecretStr) -> Ed25519PrivateKey:
    """The log's Ed25519 signing key from its 32-byte seed (base64url)."""
    return Ed25519PrivateKey.from_private_bytes(decode_b64url(seed.get_secret_value()))


class TrustRuntime:
    """Repositories, the log and the tree-head publisher of one identity process."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], key: Ed25519PrivateKey) -> None:
        """Build the adapters; nothing connects until :meth:`prepare`."""
        self.repo = TrustRepository(db)
        self.log = MerkleLog(db)
        self.key = key
        self.ctx: TrustContext | None = None
        self._task: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        """Indexes, the log's state, and the face models (loaded off the event loop)."""
        await self.repo.create_indexes()
        await ensure_outbox_index(self.log.heads)
        await self.log.load()
        await face.run_cpu(face.models)

    def outbox_collections(self) -> list[Any]:
        """Collections the outbox relay must serve."""
        return [*self.repo.outbox_collections(), self.log.heads]

    def start(self, identity: IdentityContext) -> TrustContext:
        """The context for the routes; start publishing tree heads."""
        self.ctx = TrustContext(identity=identity, repo=self.repo, log=self.log, log_key=self.key)
        self._task = asyncio.create_task(self._publish(self.ctx), name="trust-tree-heads")
        return self.ctx

    async def _publish(self, ctx: TrustContext) -> None:
        interval = ctx.identity.settings.trust_head_interval_s
        while True:
            try:
                latest = await self.log.latest_head()
                if latest is None or latest.tree_size < self.log.size:
                    await publish_head(ctx)
            except Exception as exc:  # engines down: the next round tries again
                log.warning("tree head publication failed", extra={"error": repr(exc)})
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop the publisher."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
