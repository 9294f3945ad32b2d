"""The marketing service's business metrics of docs/observability.md that are not the
offers' own (``zc_marketing_offers_total`` lives with the offers, in :mod:`.outreach`).

``zc_marketing_trigger_delivery_seconds``: from the triggering event (a salary paid, a studio
card clicked, an approved loan offer left unaccepted for the trigger's minutes) to the
channel's delivery receipt, observed once the delivery is stored; scheduled sends have no
trigger and are not observed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Histogram

__all__ = ["TRIGGER_DELIVERY", "trigger_delivered"]

TRIGGER_DELIVERY = Histogram(
    "zc_marketing_trigger_delivery_seconds",
    "From the triggering event to the channel's delivery receipt",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
)


def trigger_delivered(triggered_at: datetime, received_at: datetime) -> None:
    """A triggered offer's delivery receipt was stored just now."""
    if triggered_at.tzinfo is None:
        triggered_at = triggered_at.replace(tzinfo=UTC)
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    TRIGGER_DELIVERY.observe(max((received_at - triggered_at).total_seconds(), 0.0))
