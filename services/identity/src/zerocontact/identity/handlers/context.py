"""What the handlers need, built once in the app's lifespan (unit tests can build fakes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from zerocontact.identity.domain.authentication import LockoutPolicy
from zerocontact.identity.notifier import Notifier
from zerocontact.identity.repository import (
    ChallengeRepository,
    PartyRepository,
    SessionRepository,
    SourceThrottleRepository,
)
from zerocontact.identity.settings import IdentitySettings
from zerocontact.identity.tokens import SigningKeys
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.pii import FieldCipher


class Passwords:
    """Argon2id hashing off the event loop (hashing is deliberately slow CPU work)."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        """Cost parameters (RFC 9106); hashes made with other parameters are upgraded on login."""
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # Verified when the phone is unknown, so the response takes as long as for a real one.
        self._dummy = self._hasher.hash("not a real password: equalises timing")

    async def hash(self, password: str) -> str:
        """An argon2id PHC string."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored`` (None: check a dummy, return False)."""

        def check() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other cost parameters."""
        return self._hasher.check_needs_rehash(stored)


@dataclass
class IdentityContext:
    """Repositories, keys and policies of one identity process."""

    settings: IdentitySettings
    parties: PartyRepository
    sessions: SessionRepository
    challenges: ChallengeRepository
    sources: SourceThrottleRepository
    cipher: FieldCipher
    passwords: Passwords
    keys: SigningKeys
    relay: OutboxRelay
    notifier: Notifier
    party_policy: LockoutPolicy
    source_policy: LockoutPolicy

    def decrypt_birth_date(self, token: str) -> date:
        """The customer's birth date from its ciphertext."""
        return date.fromisoformat(self.cipher.decrypt(token, context="customer.birth_date"))
