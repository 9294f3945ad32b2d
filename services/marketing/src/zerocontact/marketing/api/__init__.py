"""HTTP API of marketing (OpenAPI at /docs and /openapi.json): one ``/v1`` router per
resource, each behind the back office's credential and operator id (:mod:`.deps`).

Every ``/v1`` call is made by the bank's back office for one of its staff: it presents the
shared ``X-Operator-Key`` (403 without it) and names the member of staff in ``X-Operator-Id``.
Mutating calls take an ``Idempotency-Key``: a retry returns the first response."""

from __future__ import annotations

from fastapi import APIRouter

from zerocontact.marketing.api import campaigns, catalog, parties, studios
from zerocontact.marketing.api.campaigns import (
    CampaignIn,
    DesignIn,
    InteractionIn,
    VariantIn,
)
from zerocontact.marketing.api.catalog import ProductIn, SegmentIn
from zerocontact.marketing.api.deps import PathMismatch, request_fingerprint
from zerocontact.marketing.api.parties import PayeeLinkIn, PreferencesIn, RiskToleranceIn
from zerocontact.marketing.api.studios import SessionIn, StudioIn, ViewerEventIn

# In the order the service documents them.
routers: tuple[APIRouter, ...] = (
    catalog.router,
    parties.router,
    campaigns.router,
    studios.router,
)

__all__ = [
    "CampaignIn",
    "DesignIn",
    "InteractionIn",
    "PathMismatch",
    "PayeeLinkIn",
    "PreferencesIn",
    "ProductIn",
    "RiskToleranceIn",
    "SegmentIn",
    "SessionIn",
    "StudioIn",
    "VariantIn",
    "ViewerEventIn",
    "request_fingerprint",
    "routers",
]
