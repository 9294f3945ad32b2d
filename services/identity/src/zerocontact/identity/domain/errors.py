"""Typed refusals of the identity domain; the HTTP edge turns each into a problem response."""

from __future__ import annotations

from zerocontact.platform.errors import DomainError, Invalid, Throttled, Unauthenticated
from zerocontact.platform.errors import Forbidden as Forbidden  # the identity API's refusal


class InvalidIdentityData(ValueError):
    """A resident ID, phone number, credit code or date is malformed or inconsistent."""


class DuplicateParty(DomainError):
    """A party with the same resident ID, phone number or credit code is registered already."""

    code = "duplicate_party"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


class RequestInProgress(DomainError):
    """A request with the same idempotency key is still being processed."""

    code = "request_in_progress"


class KycTransitionRefused(DomainError):
    """The requested KYC/KYB level change is not allowed from the current state."""

    code = "kyc_transition_refused"


class RepresentativeNotFound(Invalid):
    """The enterprise's legal representative is not a registered customer."""

    code = "representative_not_found"


class AuthenticationFailed(Unauthenticated):
    """Credentials did not match. Deliberately vague: it never says which part was wrong."""

    code = "authentication_failed"


class AccountLocked(Throttled):
    """Too many failures: attempts are refused unchecked until the lock expires."""

    code = "account_locked"


class SourceThrottled(Throttled):
    """Too many failures from this source address: attempts are refused for a while."""

    code = "source_throttled"


class FactorStateConflict(DomainError):
    """The factor is not in a state that allows this (e.g. confirming without enrolment)."""

    code = "factor_state_conflict"


class RefreshTokenReused(Unauthenticated):
    """A refresh token was presented twice: its whole family has been revoked."""

    code = "refresh_token_reused"
