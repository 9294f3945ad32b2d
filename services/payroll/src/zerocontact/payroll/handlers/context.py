"""What every handler receives, and the idempotency-key claim the API makes before one runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from zerocontact.payroll.batch_runner import BatchRunner
from zerocontact.payroll.domain.batches import BatchLimits, RetryPolicy
from zerocontact.payroll.domain.errors import KeyReused
from zerocontact.payroll.rail import PaymentRail
from zerocontact.payroll.repository import PayrollRepository
from zerocontact.platform.ids import new_id
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.pii import FieldCipher
from zerocontact.platform.projection import ProjectionWaits


@dataclass
class Context:
    """Collaborators every handler may need."""

    repo: PayrollRepository
    ledger: Ledger
    rail: PaymentRail
    relay: OutboxRelay
    cipher: FieldCipher
    runner: BatchRunner
    topic: str
    currency: str = "CNY"
    chunk_size: int = 500
    limits: BatchLimits = field(
        default_factory=lambda: BatchLimits(Money.of(Decimal("500000.00"), "CNY"))
    )
    mmf_annual_rate: Decimal = Decimal("0.018")
    redeem_lead_time: timedelta = timedelta(days=1)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Requests naming an enterprise payroll has not heard of (or not VERIFIED yet) wait for
    # identity's events, bounded; the identity consumer wakes them.
    party_waits: ProjectionWaits = field(default_factory=ProjectionWaits)


def fingerprint(payload: Any) -> str:
    """A stable hash of a request, to tell a retry from a different request under one key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def claim(ctx: Context, scope: str, key: str, payload: Any) -> tuple[str, Any]:
    """Claim an idempotency key: ``(resource id, first response or None)``."""
    claimed = await ctx.repo.claim_key(f"{scope}:{key}", fingerprint(payload), new_id())
    if claimed.fingerprint != fingerprint(payload):
        raise KeyReused("this Idempotency-Key was used for a different request")
    return claimed.resource_id, claimed.response
