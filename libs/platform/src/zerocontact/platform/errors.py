"""Domain errors: typed refusals the caller can act on, free of any framework.

A service's domain raises subclasses of these categories (``class LoanNotFound(NotFound)``);
the edges translate the category once: :mod:`zerocontact.platform.http` to an HTTP status and
a problem body, the gateway to a gRPC status. Nothing here imports FastAPI, PyMongo, aiokafka,
grpc or Faust, so domain modules can import it and stay pure.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "NotYetKnown",
    "Pending",
    "Throttled",
    "Unauthenticated",
    "Unavailable",
]


class DomainError(Exception):
    """A refusal the caller can act on: the state does not allow it (a conflict).

    ``code`` is the stable machine-readable name (the problem's ``title``); ``context`` holds
    extra fields that are safe to show the caller (never personal data).
    """

    code: ClassVar[str] = "conflict"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context


class Conflict(DomainError):
    """The current state does not allow the request (the default category)."""


class NotFound(DomainError):
    """The addressed resource does not exist (or is not the caller's to see)."""

    code = "not_found"


class Invalid(DomainError):
    """The request is well-formed but its values break a rule."""

    code = "invalid_request"


class Unauthenticated(DomainError):
    """No valid credential."""

    code = "unauthenticated"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    code = "forbidden"


class Throttled(DomainError):
    """Too many attempts; try again later."""

    code = "throttled"


class Unavailable(DomainError):
    """A transient condition: retrying the same request later can succeed."""

    code = "unavailable"


class NotYetKnown(Unavailable):
    """A party (or other fact) this service learns from another's events is not in its view
    yet, after a bounded wait: identity may have just registered it. Retrying later can
    succeed; ``retry_after_s`` says when (HTTP 503 with ``Retry-After``)."""

    code = "party_not_yet_known"


class Pending(DomainError):
    """Accepted, but the result is not ready yet: ask again later."""

    code = "pending"
