"""Segment membership: kept current per profile change (event-driven) and recomputable in
batch. Membership lives in the profile (``segments.<id>: true``); each change is a
``SegmentMembershipChanged`` event written with it (version-guarded on ``seg_version``)."""

from __future__ import annotations

import time as wallclock
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zerocontact.marketing import events
from zerocontact.marketing.domain.segments import Rule, membership_changes
from zerocontact.marketing.profiles import facts
from zerocontact.marketing.repository import PROFILES, Repository
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay, outbox_fields

MAX_ATTEMPTS = 5


async def refresh_membership(
    repo: Repository,
    relay: OutboxRelay,
    rules: dict[str, Rule],
    profile: Document,
    *,
    now: datetime,
    time_zone: str,
    topic: str,
) -> tuple[set[str], set[str]]:
    """Bring one profile's memberships up to date; (joined, left)."""
    for _ in range(MAX_ATTEMPTS):
        current = set((profile.get("segments") or {}).keys())
        joined, left = membership_changes(
            rules, facts(profile, now=now, time_zone=time_zone), current, now=now
        )
        if not joined and not left:
            return set(), set()
        party_id = profile["_id"]
        version = int(profile.get("seg_version", 0))
        evts = [
            events.segment_membership_changed(topic, party_id, s, True, now) for s in sorted(joined)
        ]
        evts += [
            events.segment_membership_changed(topic, party_id, s, False, now) for s in sorted(left)
        ]
        update: dict[str, Any] = {
            "$set": {
                **{f"segments.{s}": True for s in joined},
                "seg_version": version + 1,
                **outbox_fields(evts, version=version + 1),
            }
        }
        if left:
            update["$unset"] = {f"segments.{s}": "" for s in left}
        if await repo.change_membership(party_id, seg_version=version, update=update):
            relay.nudge(PROFILES, party_id)
            return joined, left
        reloaded = await repo.raw_profile(party_id)
        if reloaded is None:
            return set(), set()
        profile = reloaded
    return set(), set()


@dataclass(frozen=True)
class Recomputed:
    """What a batch recomputation did."""

    profiles: int
    changed: int
    joined: int
    left: int
    seconds: float


async def recompute_all(
    repo: Repository,
    relay: OutboxRelay,
    rules: dict[str, Rule],
    *,
    now: datetime,
    time_zone: str,
    topic: str,
    batch_size: int = 1000,
) -> Recomputed:
    """Evaluate every profile against ``rules`` (streamed in batches; only changed profiles
    are written)."""
    started = wallclock.perf_counter()
    seen = changed = joined_n = left_n = 0
    async for batch in repo.stream_profiles(batch_size):
        for profile in batch:
            seen += 1
            current = set((profile.get("segments") or {}).keys())
            joined, left = membership_changes(
                rules, facts(profile, now=now, time_zone=time_zone), current, now=now
            )
            if not joined and not left:
                continue
            j, lf = await refresh_membership(
                repo, relay, rules, profile, now=now, time_zone=time_zone, topic=topic
            )
            changed += 1
            joined_n += len(j)
            left_n += len(lf)
    return Recomputed(seen, changed, joined_n, left_n, wallclock.perf_counter() - started)
