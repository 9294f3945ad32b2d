"""Payroll's MongoDB repository (a package: the aggregates' store, the items' hot path)."""

from zerocontact.payroll.repository.layout import (
    BATCHES,
    EMPLOYERS,
    GIG_PAYOUTS,
    TREASURY,
    chunk_id,
)
from zerocontact.payroll.repository.store import KeyClaim, PayrollRepository
from zerocontact.platform.outbox import (
    ConcurrentUpdate as ConcurrentUpdate,  # re-exported: the service's callers catch it
)

__all__ = [
    "BATCHES",
    "EMPLOYERS",
    "GIG_PAYOUTS",
    "TREASURY",
    "ConcurrentUpdate",
    "KeyClaim",
    "PayrollRepository",
    "chunk_id",
]
