"""KYC (customers) and KYB (enterprises) levels and the rules for moving between them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from zerocontact.identity.domain.errors import KycTransitionRefused


class KycLevel(StrEnum):
    """Levels in increasing order of assurance."""

    NONE = "NONE"
    BASIC = "BASIC"
    VERIFIED = "VERIFIED"
    ENHANCED = "ENHANCED"

    @property
    def rank(self) -> int:
        """Position in the order NONE < BASIC < VERIFIED < ENHANCED."""
        return list(KycLevel).index(self)


@dataclass(frozen=True)
class KycTransition:
    """One recorded change: who made it, what changed, why, on what evidence, when."""

    from_level: KycLevel
    to_level: KycLevel
    actor: str
    reason: str
    evidence: str
    at: datetime


SYSTEM = "system"


def transition(
    current: KycLevel,
    target: KycLevel,
    *,
    actor: str,
    reason: str,
    evidence: str,
    now: datetime,
) -> KycTransition:
    """The transition from ``current`` to ``target``; only one level up at a time.

    Levels are never skipped, so every level a party holds has its own recorded evidence.
    """
    if target.rank != current.rank + 1:
        raise KycTransitionRefused(
            f"cannot move from {current} to {target}: levels rise one step at a time",
            current_level=str(current),
            target_level=str(target),
        )
    if not reason.strip():
        raise KycTransitionRefused("a KYC transition needs a reason")
    return KycTransition(current, target, actor, reason.strip(), evidence, now)


def enterprise_transition(
    current: KycLevel,
    target: KycLevel,
    *,
    representative_level: KycLevel,
    actor: str,
    reason: str,
    evidence: str,
    now: datetime,
) -> KycTransition:
    """A KYB transition: VERIFIED and above only when the legal representative is VERIFIED."""
    if target.rank >= KycLevel.VERIFIED.rank and representative_level.rank < KycLevel.VERIFIED.rank:
        raise KycTransitionRefused(
            f"an enterprise is {target} only when its legal representative is VERIFIED "
            f"(the representative is {representative_level})",
            current_level=str(current),
            target_level=str(target),
            representative_level=str(representative_level),
        )
    return transition(current, target, actor=actor, reason=reason, evidence=evidence, now=now)
