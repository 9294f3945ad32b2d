"""Typed refusals of the identity domain; the HTTP edge turns each into a problem response."""

from __future__ import annotations

from zerocontact.platform.http import DomainError


class InvalidIdentityData(ValueError):
    """A resident ID, phone number, credit code or date is malformed or inconsistent."""


class DuplicateParty(DomainError):
    """A party with the same resident ID, phone number or credit code is registered already."""

    status = 409
    code = "duplicate_party"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before for a different request."""

    status = 409
    code = "idempotency_conflict"


class RequestInProgress(DomainError):
    """A request with the same idempotency key is still being processed."""

    status = 409
    code = "request_in_progress"


class KycTransitionRefused(DomainError):
    """The requested KYC/KYB level change is not allowed from the current state."""

    status = 409
    code = "kyc_transition_refused"


class RepresentativeNotFound(DomainError):
    """The enterprise's legal representative is not a registered customer."""

    status = 422
    code = "representative_not_found"


class AuthenticationFailed(DomainError):
    """Credentials did not match. Deliberately vague: it never says which part was wrong."""

    status = 401
    code = "authentication_failed"


class AccountLocked(DomainError):
    """Too many failures: attempts are refused unchecked until the lock expires."""

    status = 429
    code = "account_locked"


class SourceThrottled(DomainError):
    """Too many failures from this source address: attempts are refused for a while."""

    status = 429
    code = "source_throttled"


class FactorStateConflict(DomainError):
    """The factor is not in a state that allows this (e.g. confirming without enrolment)."""

    status = 409
    code = "factor_state_conflict"


class RefreshTokenReused(DomainError):
    """A refresh token was presented twice: its whole family has been revoked."""

    status = 401
    code = "refresh_token_reused"


class Forbidden(DomainError):
    """The authenticated party may not act on this resource."""

    status = 403
    code = "forbidden"
