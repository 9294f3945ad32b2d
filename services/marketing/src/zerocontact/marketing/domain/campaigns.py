"""A campaign and its life: draft → compliance review → blocked or pending approval →
approved (four eyes) → runs. Pure: the handlers load a :class:`Campaign`, ask it whether a
step is allowed (a refusal is a typed error) and store what it answers.

The transitions::

    draft ──review──▶ blocked | pending_approval
    blocked | pending_approval ──review──▶ blocked | pending_approval
    pending_approval ──approve (not the author)──▶ approved
    draft | blocked | pending_approval ──redesign──▶ draft
    approved ──start_run (with an audience, not running)──▶ approved, run "running"

``approved`` and ``completed`` are final: no step changes their status. (Nothing in the
service sets ``completed`` today; the steps refuse it as they always did.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from zerocontact.marketing.domain.catalog import Product
from zerocontact.platform import compliance
from zerocontact.platform.compliance import Finding, Variant
from zerocontact.platform.errors import DomainError, Forbidden, Invalid


class CampaignStatus(StrEnum):
    """Where a campaign is in its review and approval (stored as ``status``)."""

    DRAFT = "draft"
    BLOCKED = "blocked"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    COMPLETED = "completed"


_S = CampaignStatus
# Every status a campaign may go to from each status (a review goes to blocked or pending
# approval, a redesign to draft, an approval to approved). Approved and completed are final:
# their content is frozen, a change needs a new campaign.
TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    _S.DRAFT: frozenset({_S.DRAFT, _S.BLOCKED, _S.PENDING_APPROVAL}),
    _S.BLOCKED: frozenset({_S.DRAFT, _S.BLOCKED, _S.PENDING_APPROVAL}),
    _S.PENDING_APPROVAL: frozenset({_S.DRAFT, _S.BLOCKED, _S.PENDING_APPROVAL, _S.APPROVED}),
    _S.APPROVED: frozenset(),
    _S.COMPLETED: frozenset(),
}
# The states of a campaign's current run (``run.state``).
RUNNING = "running"
DONE = "done"


class CampaignStateError(DomainError):
    """The campaign is not in a state that allows this step."""

    code = "campaign_state"


class ComplianceBlocked(DomainError):
    """The campaign has compliance findings: it cannot be approved or sent."""

    code = "compliance_blocked"


class SameApprover(Forbidden):
    """The approver must be someone other than the author (four eyes)."""

    code = "approver_is_author"


class UnknownReference(Invalid):
    """A referenced product, segment or studio does not exist."""

    code = "unknown_reference"


def finding_view(finding: Finding) -> dict[str, Any]:
    """A finding as stored and shown."""
    return asdict(finding)


@dataclass(frozen=True)
class Campaign:
    """A campaign as its rules see it: the product snapshot and content variants, status,
    author and approver, findings, audience, budget and current run.

    (The rest of the plan — name, goal, schedule, trigger — travels with the stored campaign;
    no rule here needs it.)
    """

    id: str
    status: CampaignStatus
    author: str
    version: int
    product: Product
    variants: tuple[Variant, ...]
    approver: str | None = None
    findings: tuple[Finding, ...] = ()
    segment_id: str | None = None
    run_state: str | None = None
    budget_minor: int | None = None
    cost_per_contact_minor: int = 0
    spent_minor: int = 0
    holdout_percent: float = 0.0

    def allows(self, status: CampaignStatus) -> bool:
        """Whether the campaign may go to ``status`` from where it is."""
        return status in TRANSITIONS[self.status]

    def _blocked(self, detail: str) -> ComplianceBlocked:
        return ComplianceBlocked(detail, findings=[finding_view(f) for f in self.findings])

    def check_redesign(self) -> CampaignStatus:
        """New content sends the campaign back to draft (to be reviewed again); refused once
        it is approved or completed."""
        if not self.allows(CampaignStatus.DRAFT):
            raise CampaignStateError(f"campaign {self.id} is {self.status}; create a new one")
        return CampaignStatus.DRAFT

    def review(self) -> tuple[CampaignStatus, list[Finding]]:
        """Run the compliance checker over the content: blocked with any finding, else
        awaiting an approver (with the findings); refused once approved or completed."""
        if not self.allows(CampaignStatus.BLOCKED):
            raise CampaignStateError(f"campaign {self.id} is {self.status}")
        findings = compliance.check(
            self.variants,
            disclosures=self.product.disclosures,
            annual_rate=self.product.annual_rate,
        )
        status = CampaignStatus.BLOCKED if findings else CampaignStatus.PENDING_APPROVAL
        return status, findings

    def is_approved_by(self, approver: str) -> bool:
        """Whether ``approver`` approved this campaign already (an approval's retry)."""
        return self.status is CampaignStatus.APPROVED and self.approver == approver

    def check_approve(self, approver: str) -> CampaignStatus:
        """Approval by ``approver``: only a reviewed campaign without findings, and never by
        its author (four eyes). The caller treats :meth:`is_approved_by` as a retry first."""
        if self.status is CampaignStatus.BLOCKED or self.findings:
            raise self._blocked(f"campaign {self.id} has {len(self.findings)} compliance findings")
        if not self.allows(CampaignStatus.APPROVED):
            raise CampaignStateError(f"campaign {self.id} is {self.status}; review it first")
        if approver == self.author:
            raise SameApprover("the approver must not be the campaign's author")
        return CampaignStatus.APPROVED

    def check_start_run(self) -> None:
        """A run to the audience segment may start: approved, with a segment, not running."""
        if self.status is not CampaignStatus.APPROVED:
            if self.findings:
                raise self._blocked(f"campaign {self.id} has compliance findings")
            raise CampaignStateError(f"campaign {self.id} is {self.status}, not approved")
        if not self.segment_id:
            raise CampaignStateError(f"campaign {self.id} has no audience segment")
        if self.run_state == RUNNING:
            raise CampaignStateError(f"campaign {self.id} is running already")


def changed_meanwhile(campaign_id: str) -> CampaignStateError:
    """The refusal when another writer changed the campaign between read and write."""
    return CampaignStateError(f"campaign {campaign_id} changed meanwhile; retry", retry=True)


__all__ = [
    "DONE",
    "RUNNING",
    "TRANSITIONS",
    "Campaign",
    "CampaignStateError",
    "CampaignStatus",
    "ComplianceBlocked",
    "SameApprover",
    "UnknownReference",
    "changed_meanwhile",
    "finding_view",
]
