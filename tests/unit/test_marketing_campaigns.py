"""The campaign state machine: which steps each status allows, and the typed refusals (their
codes are the API's problem titles)."""

from __future__ import annotations

import dataclasses

import pytest

from zerocontact.marketing.domain.campaigns import (
    TRANSITIONS,
    Campaign,
    CampaignStateError,
    CampaignStatus,
    ComplianceBlocked,
    SameApprover,
)
from zerocontact.marketing.domain.catalog import Product, ProductKind
from zerocontact.platform.compliance import Variant
from zerocontact.platform.errors import DomainError, Forbidden
from zerocontact.platform.http import http_status

S = CampaignStatus
LOAN = Product("l1", ProductKind.LOAN, "薪享贷", risk_level=1, annual_rate="7.2%")
CLEAN = Variant("a", "app_push", "薪享贷", "年化利率 7.2%，随借随还。")
DIRTY = Variant("a", "app_push", "薪享贷", "稳赚不赔，年化利率 7.2%。")


def campaign(status: CampaignStatus, **change: object) -> Campaign:
    base = Campaign(
        id="c1",
        status=status,
        author="alice",
        version=3,
        product=LOAN,
        variants=(CLEAN,),
        segment_id="customers",
    )
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


def test_every_status_has_its_transitions_and_the_final_ones_have_none() -> None:
    assert set(TRANSITIONS) == set(CampaignStatus)
    assert TRANSITIONS[S.APPROVED] == TRANSITIONS[S.COMPLETED] == frozenset()
    assert [s for s in S if campaign(s).allows(S.APPROVED)] == [S.PENDING_APPROVAL]


@pytest.mark.parametrize("status", [S.DRAFT, S.BLOCKED, S.PENDING_APPROVAL])
def test_a_review_blocks_on_findings_and_otherwise_awaits_an_approver(
    status: CampaignStatus,
) -> None:
    assert campaign(status).review() == (S.PENDING_APPROVAL, [])
    blocked, findings = campaign(status, variants=(DIRTY,)).review()
    assert blocked is S.BLOCKED and [f.rule for f in findings] == ["forbidden_claim"]
    assert campaign(status).check_redesign() is S.DRAFT


@pytest.mark.parametrize("status", [S.APPROVED, S.COMPLETED])
def test_final_campaigns_are_neither_reviewed_nor_redesigned(status: CampaignStatus) -> None:
    with pytest.raises(CampaignStateError, match=f"is {status}$"):
        campaign(status).review()
    with pytest.raises(CampaignStateError, match="create a new one"):
        campaign(status).check_redesign()


def test_approval_needs_a_clean_review_and_another_operator() -> None:
    pending = campaign(S.PENDING_APPROVAL)
    assert pending.check_approve("bob") is S.APPROVED
    with pytest.raises(SameApprover) as same:
        pending.check_approve("alice")
    assert same.value.code == "approver_is_author" and isinstance(same.value, Forbidden)
    for status in (S.DRAFT, S.APPROVED, S.COMPLETED):
        with pytest.raises(CampaignStateError, match="review it first"):
            campaign(status).check_approve("bob")
    _, findings = campaign(S.DRAFT, variants=(DIRTY,)).review()
    blocked = campaign(S.BLOCKED, variants=(DIRTY,), findings=tuple(findings))
    with pytest.raises(ComplianceBlocked) as refused:
        blocked.check_approve("bob")
    assert refused.value.code == "compliance_blocked"
    assert refused.value.context["findings"][0]["rule"] == "forbidden_claim"


def test_an_approval_retry_is_recognised() -> None:
    approved = campaign(S.APPROVED, approver="bob")
    assert approved.is_approved_by("bob") and not approved.is_approved_by("carol")
    assert not campaign(S.PENDING_APPROVAL).is_approved_by("bob")


def test_a_run_needs_an_approved_campaign_with_an_audience_not_running() -> None:
    campaign(S.APPROVED).check_start_run()
    with pytest.raises(CampaignStateError, match="not approved"):
        campaign(S.PENDING_APPROVAL).check_start_run()
    _, findings = campaign(S.DRAFT, variants=(DIRTY,)).review()
    with pytest.raises(ComplianceBlocked):
        campaign(S.BLOCKED, findings=tuple(findings)).check_start_run()
    with pytest.raises(CampaignStateError, match="no audience segment"):
        campaign(S.APPROVED, segment_id=None).check_start_run()
    with pytest.raises(CampaignStateError, match="running already"):
        campaign(S.APPROVED, run_state="running").check_start_run()


def test_refusals_keep_their_http_statuses() -> None:
    errors: list[DomainError] = [
        CampaignStateError("x"),
        ComplianceBlocked("x"),
        SameApprover("x"),
    ]
    assert [http_status(e) for e in errors] == [409, 409, 403]
    assert [e.code for e in errors] == [
        "campaign_state",
        "compliance_blocked",
        "approver_is_author",
    ]
