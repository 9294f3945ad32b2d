"""MongoDB storage of identity (database ``zc_identity``): one module per collection family."""

from zerocontact.identity.repository.idempotency import IdempotencyStore, StoredResponse
from zerocontact.identity.repository.parties import (
    CUSTOMERS,
    ENTERPRISES,
    ConcurrentUpdate,
    CustomerRecord,
    PartyRepository,
)
from zerocontact.identity.repository.sessions import ChallengeRepository, SessionRepository
from zerocontact.identity.repository.throttles import SourceThrottleRepository

__all__ = [
    "CUSTOMERS",
    "ENTERPRISES",
    "ChallengeRepository",
    "ConcurrentUpdate",
    "CustomerRecord",
    "IdempotencyStore",
    "PartyRepository",
    "SessionRepository",
    "SourceThrottleRepository",
    "StoredResponse",
]
