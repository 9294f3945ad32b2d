"""Payroll's refusals, each a category of ``zerocontact.platform.errors`` (HTTP status at the edge)."""

from __future__ import annotations

from zerocontact.platform.errors import DomainError, Forbidden, Invalid

__all__ = [
    "BatchRefused",
    "FundsShort",
    "InvalidState",
    "KeyReused",
    "MakerCheckerRequired",
    "NotVerified",
    "TopUpConflict",
]


class NotVerified(DomainError):
    """The enterprise is unknown to payroll or not VERIFIED by identity."""

    code = "enterprise_not_verified"


class KeyReused(DomainError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


class BatchRefused(Invalid):
    """The batch failed validation; nothing was reserved or paid."""

    code = "batch_refused"


class InvalidState(DomainError):
    """The batch or payout is not in a state that allows this."""

    code = "invalid_state"


class FundsShort(DomainError):
    """The wallet (with its money-market holding) does not cover the amount."""

    code = "insufficient_funds"


class MakerCheckerRequired(Forbidden):
    """The employer requires a different person to approve than the one who submitted."""

    code = "maker_checker"


class TopUpConflict(DomainError):
    """The rail reference was confirmed before with other terms."""

    code = "rail_reference_conflict"
