"""Payroll's aggregates as the handlers see them: parties, employers, batches, gig payouts.

Plain records without I/O; the repository turns them into documents and back. Amounts are
minor units (``int``) in the aggregate's currency, never floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from zerocontact.payroll.domain.batches import BatchState
from zerocontact.platform.money import Money

VERIFIED_LEVELS = ("KYC_LEVEL_VERIFIED", "KYC_LEVEL_ENHANCED")
GIG_FINAL = ("PAID", "FAILED")
GIG_OPEN = ("PENDING", "SENT")


@dataclass(frozen=True)
class Party:
    """An enterprise (or other party) as identity's events described it to payroll."""

    party_id: str
    kind: str = ""
    name: str = ""
    kyc_level: str = ""
    legal_representative_id: str = ""

    @property
    def verified(self) -> bool:
        """KYB VERIFIED (or better) at identity."""
        return self.kyc_level in VERIFIED_LEVELS


@dataclass(frozen=True)
class Agent:
    """An HR platform authorised to act for an employer, through its legal representative."""

    representative_id: str
    authorised_at: datetime


@dataclass(frozen=True)
class Employer:
    """An onboarded enterprise with a wallet."""

    employer_id: str
    name: str
    representative_id: str
    maker_checker: bool
    sweep_threshold_minor: int | None
    agents: Mapping[str, Agent]
    onboarded_at: datetime
    version: int = 1

    def may_act(self, subject: str) -> bool:
        """The legal representative, or the representative of an authorised agent."""
        allowed = {self.representative_id} | {a.representative_id for a in self.agents.values()}
        return subject in allowed


@dataclass(frozen=True)
class Batch:
    """A submitted payroll batch (refused batches keep their validation ``report``)."""

    batch_id: str
    employer_id: str
    currency: str
    item_count: int
    control_sum_minor: int
    submitted_by: str
    submitted_at: datetime
    source: str
    scheduled_for: datetime | None
    state: BatchState
    chunks: int = 0
    chunks_done: frozenset[int] = frozenset()
    report: Mapping[str, Any] | None = None
    approved_by: str | None = None
    version: int = 1

    @property
    def control_sum(self) -> Money:
        """The batch total."""
        return Money(self.currency, self.control_sum_minor)


@dataclass(frozen=True)
class BatchItem:
    """One salary of a batch as stored (card encrypted; payslip figures in minor units)."""

    item_id: str
    batch_id: str
    seq: int
    chunk: int
    end_to_end_id: str
    payee_name: str
    card_enc: str
    card_masked: str
    bank: str
    amount_minor: int
    customer_id: str
    gross_minor: int
    deductions_minor: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemLine:
    """An item with the state of its outcome (PENDING until decided), for reports."""

    seq: int
    end_to_end_id: str
    payee_name: str
    card_masked: str
    bank: str
    amount_minor: int
    state: str
    attempts: int
    reason_code: str


@dataclass(frozen=True)
class PayslipLine:
    """A payee's payslip: one item of a batch with its payslip figures and state."""

    batch_id: str
    employer_id: str
    end_to_end_id: str
    currency: str
    gross_minor: int
    deductions_minor: Mapping[str, int]
    net_minor: int
    card_masked: str
    state: str


@dataclass(frozen=True)
class GigPayout:
    """A per-task payout to a flexible worker: gross held, net paid, tax withheld."""

    payout_id: str
    employer_id: str
    payee_name: str
    card_enc: str
    card_masked: str
    bank: str
    currency: str
    gross_minor: int
    tax_minor: int
    net_minor: int
    task_reference: str
    state: str
    attempts: int
    created_at: datetime
    reason_code: str = ""
    version: int = 1

    @property
    def gross(self) -> Money:
        """The gross amount."""
        return Money(self.currency, self.gross_minor)

    @property
    def tax(self) -> Money:
        """The income tax withheld."""
        return Money(self.currency, self.tax_minor)

    @property
    def final(self) -> bool:
        """PAID or FAILED: nothing more happens to it."""
        return self.state in GIG_FINAL
