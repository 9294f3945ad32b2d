"""Typed refusals of the loan domain; the HTTP edge turns each into a problem response."""

from __future__ import annotations

from zerocontact.platform.http import DomainError


class UnknownProduct(DomainError):
    """No product with this id is offered."""

    status = 422
    code = "unknown_product"


class InvalidApplication(DomainError):
    """Amount, currency or term outside what the product allows (``field`` names which)."""

    status = 422
    code = "invalid_application"


class PartyNotVerified(DomainError):
    """The party is unknown to loan's view of identity, or below the product's KYC level."""

    status = 403
    code = "party_not_verified"


class NotYourApplication(DomainError):
    """The authenticated party may not act on this application or loan."""

    status = 403
    code = "forbidden"


class OfferNotAvailable(DomainError):
    """There is no approved offer to accept (awaiting risk, declined, or expired)."""

    status = 409
    code = "offer_not_available"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before for a different request."""

    status = 409
    code = "idempotency_conflict"


class UnknownParty(DomainError):
    """A report names a party loan has never heard of from identity."""

    status = 422
    code = "unknown_party"


class Busy(DomainError):
    """Concurrent writers kept winning; the request can be retried with the same key."""

    status = 503
    code = "busy"
