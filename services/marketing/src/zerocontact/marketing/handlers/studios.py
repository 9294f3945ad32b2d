"""Live studios: studios, their sessions, viewer events folded into each session's
statistics (once per ``event_id``) and published as StudioActivity, and reach per day."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from zerocontact.marketing import events
from zerocontact.marketing.domain.campaigns import CampaignStateError
from zerocontact.marketing.domain.studios import SessionStats
from zerocontact.marketing.profiles import day_key
from zerocontact.marketing.repository import SESSIONS, ConcurrentUpdate, Repository
from zerocontact.platform.errors import NotFound
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay


async def put_studio(repo: Repository, doc: Document) -> None:
    """Add or rename a live studio."""
    await repo.put_studio(doc)


async def studio_exists(repo: Repository, studio_id: str) -> None:
    """``NotFound`` unless the studio is defined."""
    if not await repo.studio_exists(studio_id):
        raise NotFound(f"studio {studio_id} does not exist")


async def schedule_session(repo: Repository, doc: Document) -> Document:
    """A new session of a studio (409 ``campaign_state`` if its id is taken)."""
    if not await repo.insert_session(doc):
        raise CampaignStateError(f"session {doc['_id']} exists")
    return session_stats_view(doc)


async def session_view(repo: Repository, session_id: str) -> Document:
    """A session's statistics and, from the signals, its concurrent viewers."""
    doc = await repo.session(session_id)
    if doc is None:
        raise NotFound(f"studio session {session_id} does not exist")
    view = session_stats_view(doc)
    live = await repo.live_signal(f"viewers:{session_id}")
    view["signalled_concurrent"] = None if live is None else live["concurrent"]
    return view


async def studio_reach(repo: Repository, studio_id: str, *, day: str) -> Document:
    """Distinct viewers of a studio's sessions on a local day (YYYYMMDD)."""
    parties: set[str] = set()
    async for reach in repo.reach_of(studio_id):
        parties.update((reach.get(day) or {}).keys())
    return {"studio_id": studio_id, "day": day, "reach": len(parties)}


async def studio_event(
    repo: Repository,
    session_id: str,
    *,
    relay: OutboxRelay,
    topic: str,
    event_id: str,
    party_id: str,
    kind: str,
    product_id: str,
    at: datetime,
    reach_time_zone: str = "Asia/Shanghai",
) -> Document:
    """One viewer event of a session: folded into the session's statistics (once per
    ``event_id``) and published as StudioActivity."""
    for _ in range(10):
        session = await repo.session(session_id)
        if session is None:
            raise NotFound(f"studio session {session_id} does not exist")
        if event_id in (session.get("seen") or {}):
            return session_stats_view(session)
        stats = _stats_of(session)
        stats.apply(kind, party_id, at)
        fields = {**_stats_fields(stats), f"seen.{event_id}": True}
        if kind == "joined":
            fields[f"reach.{day_key(at, reach_time_zone)}.{party_id}"] = True
        try:
            await repo.update_session(
                session_id,
                version=session["version"],
                changes=fields,
                events=[
                    events.studio_activity(
                        topic,
                        studio_id=session["studio_id"],
                        session_id=session_id,
                        party_id=party_id,
                        kind=kind,
                        product_id=product_id,
                        at=at,
                    )
                ],
            )
        except ConcurrentUpdate:
            continue
        relay.nudge(SESSIONS, session_id)
        return session_stats_view(await repo.session(session_id) or {})
    raise CampaignStateError(f"session {session_id} is too busy; retry", retry=True)


def _stats_of(session: Document) -> SessionStats:
    s = session.get("stats") or {}
    return SessionStats(
        viewers=set(s.get("viewers", [])),
        present=dict(s.get("present", {})),
        concurrent_peak=int(s.get("concurrent_peak", 0)),
        watch_seconds=float(s.get("watch_seconds", 0.0)),
        comments=int(s.get("comments", 0)),
        card_clicks=int(s.get("card_clicks", 0)),
        clickers=set(s.get("clickers", [])),
        conversions=int(s.get("conversions", 0)),
    )


def _stats_fields(stats: SessionStats) -> dict[str, Any]:
    return {
        "stats": {
            "viewers": sorted(stats.viewers),
            "present": stats.present,
            "concurrent_peak": stats.concurrent_peak,
            "watch_seconds": stats.watch_seconds,
            "comments": stats.comments,
            "card_clicks": stats.card_clicks,
            "clickers": sorted(stats.clickers),
            "conversions": stats.conversions,
        }
    }


def session_stats_view(session: Document) -> Document:
    """A session with its statistics."""
    return {
        "session_id": session.get("_id"),
        "studio_id": session.get("studio_id"),
        "host": session.get("host"),
        "starts_at": session.get("starts_at"),
        "stats": _stats_of(session).summary(),
    }
