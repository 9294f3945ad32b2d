"""The order in which the sequencer gives queued leaves their indexes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zerocontact.identity.trust.sequencer import pending_order


def test_pending_leaves_are_ordered_by_queued_time_then_id_and_integrated_ones_skipped() -> None:
    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    docs = [
        {"_id": "b", "queued_at": t0},
        {"_id": "late", "queued_at": t0 + timedelta(seconds=1)},
        {"_id": "a", "queued_at": t0},
        {"_id": "done", "queued_at": t0 - timedelta(seconds=5), "index": 7},
        {"_id": "naive", "queued_at": (t0 - timedelta(seconds=1)).replace(tzinfo=None)},
    ]
    assert [d["_id"] for d in pending_order(docs)] == ["naive", "a", "b", "late"]
    assert pending_order([]) == []
