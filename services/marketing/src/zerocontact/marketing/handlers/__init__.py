"""Commands and queries of the marketing API, one module per room: catalog and parties,
campaigns (plan, design, review, approval, runs), results (interactions, evaluation) and
live studios. Every name stays importable from ``zerocontact.marketing.handlers``."""

from __future__ import annotations

from zerocontact.marketing.domain.campaigns import (
    CampaignStateError,
    ComplianceBlocked,
    SameApprover,
    UnknownReference,
    finding_view,
)
from zerocontact.marketing.handlers.campaigns import (
    approve,
    claim_due_schedules,
    create_campaign,
    execute,
    get_campaign,
    redesign,
    review,
    start_execution,
)
from zerocontact.marketing.handlers.parties import (
    assess_risk_tolerance,
    link_payee,
    list_products,
    profile_view,
    put_product,
    put_segment,
    set_preferences,
    suppressions_of,
)
from zerocontact.marketing.handlers.results import evaluate, live_funnel, record_interaction
from zerocontact.marketing.handlers.studios import (
    put_studio,
    schedule_session,
    session_stats_view,
    session_view,
    studio_event,
    studio_exists,
    studio_reach,
)

__all__ = [
    "CampaignStateError",
    "ComplianceBlocked",
    "SameApprover",
    "UnknownReference",
    "approve",
    "assess_risk_tolerance",
    "claim_due_schedules",
    "create_campaign",
    "evaluate",
    "execute",
    "finding_view",
    "get_campaign",
    "link_payee",
    "list_products",
    "live_funnel",
    "profile_view",
    "put_product",
    "put_segment",
    "put_studio",
    "record_interaction",
    "redesign",
    "review",
    "schedule_session",
    "session_stats_view",
    "session_view",
    "set_preferences",
    "start_execution",
    "studio_event",
    "studio_exists",
    "studio_reach",
    "suppressions_of",
]
