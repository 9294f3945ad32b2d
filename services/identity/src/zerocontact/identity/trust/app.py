"""Wiring of the trust services inside identity (called from identity's ``app.py``)."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.tokens import decode_b64url
from zerocontact.identity.trust import face
from zerocontact.identity.trust.handlers import (
    TrustContext,
    complete_signing,
    publish_head,
    purge_expired_recordings,
)
from zerocontact.identity.trust.log import MerkleLog
from zerocontact.identity.trust.repository import TrustRepository
from zerocontact.identity.trust.sequencer import LeafQueue, Sequencer
from zerocontact.platform.ids import new_id
from zerocontact.platform.outbox import ensure_outbox_index
from zerocontact.platform.runtime import Runtime


def trust_log_key(seed: SecretStr) -> Ed25519PrivateKey:
    """The log's Ed25519 signing key from its 32-byte seed (base64url)."""
    return Ed25519PrivateKey.from_private_bytes(decode_b64url(seed.get_secret_value()))


class TrustServices:
    """The trust adapters of one identity process: repositories, the log and its queue."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], key: Ed25519PrivateKey) -> None:
        """Build the adapters; nothing connects until :meth:`prepare`."""
        self.repo = TrustRepository(db)
        self.log = MerkleLog(db)
        self.queue = LeafQueue(db)
        self.key = key
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-12:]}"

    async def prepare(self) -> None:
        """Indexes, this replica's view of the log, and the face models (off the event loop).
        The log is not taken over here: the sequencer claims the writer's lease when free."""
        await self.repo.create_indexes()
        await ensure_outbox_index(self.log.heads)
        await self.log.refresh(force=True)
        await face.run_cpu(face.models)

    def outbox_collections(self) -> list[Any]:
        """Collections the outbox relay must serve."""
        return [*self.repo.outbox_collections(), self.log.heads]

    async def start(self, runtime: Runtime, identity: IdentityContext) -> TrustContext:
        """The context for the routes; the sequencer and the retention purge, started on
        ``runtime`` (stopped at shutdown: the sequencer gives its lease up)."""
        settings = identity.settings
        ctx = TrustContext(
            identity=identity, repo=self.repo, log=self.log, log_key=self.key, queue=self.queue
        )
        ctx.sequencer = await runtime.start(Sequencer(
            self.log, self.queue, holder=self.holder, lease_s=settings.trust_log_lease_s,
            poll_s=settings.trust_log_poll_s, batch_max=settings.trust_log_batch_max,
            idle_poll_s=settings.trust_log_idle_poll_s,
            sweep_after_s=settings.trust_sweep_after_s,
            publish_head=partial(publish_head, ctx), complete=partial(complete_signing, ctx),
        ))  # fmt: skip

        async def purge_recordings() -> None:
            await purge_expired_recordings(ctx, now=datetime.now(UTC))

        interval = settings.trust_recording_purge_interval_s
        runtime.start_job(
            "trust-recording-purge", interval, purge_recordings, first_delay_s=interval
        )
        return ctx
