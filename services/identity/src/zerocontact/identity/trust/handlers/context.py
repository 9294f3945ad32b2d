"""What every trust use case shares: the context built in the lifespan, ownership, sealing."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zerocontact.identity.domain.errors import Forbidden
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.trust.log import MerkleLog
from zerocontact.identity.trust.repository import TrustRepository
from zerocontact.identity.trust.sequencer import LeafQueue, Sequencer
from zerocontact.platform.auth import Principal


@dataclass
class TrustContext:
    """What the trust handlers need, built once in the app's lifespan."""

    identity: IdentityContext
    repo: TrustRepository
    log: MerkleLog
    log_key: Ed25519PrivateKey
    queue: LeafQueue
    sequencer: Sequencer | None = None

    @property
    def topic(self) -> str:
        """identity.events.v1."""
        return self.identity.settings.events_topic


def own(principal: Principal, customer_id: str) -> None:
    """Refuse unless the principal is the customer."""
    if principal.subject != customer_id:
        raise Forbidden("a customer can only act for themselves")


def seal_bytes(ctx: TrustContext, data: bytes, context: str) -> bytes:
    """``data`` encrypted with the personal-data cipher under ``context``."""
    return ctx.identity.cipher.encrypt(base64.b64encode(data).decode(), context=context).encode()
