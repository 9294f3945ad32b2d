"""Typed refusals of the loan domain; the HTTP edge turns each into a problem response."""

from __future__ import annotations

from zerocontact.platform.errors import DomainError, Forbidden, Invalid, Unavailable


class UnknownProduct(Invalid):
    """No product with this id is offered."""

    code = "unknown_product"


class InvalidApplication(Invalid):
    """Amount, currency or term outside what the product allows (``field`` names which)."""

    code = "invalid_application"


class PartyNotVerified(Forbidden):
    """The party is unknown to loan's view of identity, or below the product's KYC level."""

    code = "party_not_verified"


class NotYourApplication(Forbidden):
    """The authenticated party may not act on this application or loan."""

    code = "forbidden"


class OfferNotAvailable(DomainError):
    """There is no approved offer to accept (awaiting risk, declined, or expired)."""

    code = "offer_not_available"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


class UnknownParty(Invalid):
    """A report names a party loan has never heard of from identity."""

    code = "unknown_party"


class Busy(Unavailable):
    """Concurrent writers kept winning; the request can be retried with the same key."""

    code = "busy"
