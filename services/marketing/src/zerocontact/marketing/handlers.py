"""Commands of the marketing API: catalog, segments, preferences, campaigns (plan, design,
review, approval, execution, conversions, evaluation) and live studios."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime
from typing import Any

from zerocontact.marketing import events
from zerocontact.marketing.book import Book
from zerocontact.marketing.domain import compliance
from zerocontact.marketing.domain.evaluation import (
    NotEnoughData,
    cost_per_conversion,
    two_proportion_z_test,
)
from zerocontact.marketing.domain.studios import SessionStats
from zerocontact.marketing.outreach import Outreach, product_of
from zerocontact.marketing.profiles import day_key
from zerocontact.marketing.repository import (
    CAMPAIGNS,
    MEMBERS,
    PREFERENCES,
    SESSIONS,
    ConcurrentUpdate,
    Repository,
)
from zerocontact.platform.errors import DomainError, Forbidden, Invalid, NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay, insert_aggregate, update_aggregate


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


def finding_view(f: compliance.Finding) -> Document:
    """A finding as stored and shown."""
    return asdict(f)


async def set_preferences(
    repo: Repository, relay: OutboxRelay, topic: str, party_id: str, prefs: Document, now: datetime
) -> None:
    """Store a party's consent and preferences with their event."""
    fields = {**prefs, "changed_at": now}
    await repo.upsert_with_events(
        repo.preferences,
        party_id,
        set_fields=fields,
        events=[
            events.preferences_changed(
                topic,
                party_id,
                consented=prefs["consented"],
                do_not_contact=prefs["do_not_contact"],
                quiet_start=prefs["quiet_start"],
                quiet_end=prefs["quiet_end"],
                time_zone=prefs["time_zone"],
                at=now,
            )
        ],
    )
    relay.nudge(PREFERENCES, party_id)


async def assess_risk_tolerance(
    repo: Repository, relay: OutboxRelay, topic: str, party_id: str, grade: int, now: datetime
) -> None:
    """Record a questionnaire's grade; the profile takes it from the event."""
    await repo.upsert_with_events(
        repo.preferences,
        party_id,
        set_fields={"risk_grade": grade, "risk_assessed_at": now},
        events=[events.risk_tolerance_assessed(topic, party_id, grade, now)],
    )
    relay.nudge(PREFERENCES, party_id)


async def create_campaign(repo: Repository, plan: Document, author: str, now: datetime) -> Document:
    """A draft campaign: plan and design, the product snapshotted from the catalog."""
    product = await repo.products.find_one({"_id": plan["product_id"]})
    if product is None:
        raise UnknownReference(
            f"product {plan['product_id']} is not in the catalog", field="product_id"
        )
    if plan.get("segment_id") and await repo.segments.find_one({"_id": plan["segment_id"]}) is None:
        raise UnknownReference(f"segment {plan['segment_id']} does not exist", field="segment_id")
    doc = {
        "_id": new_id(),
        **plan,
        "author": author,
        "product": product,
        "status": "draft",
        "findings": [],
        "approver": None,
        "created_at": now,
        "spent_minor": 0,
    }
    await insert_aggregate(repo.campaigns, doc, [])
    return await _campaign(repo, doc["_id"])


async def _campaign(repo: Repository, campaign_id: str) -> Document:
    doc = await repo.campaigns.find_one({"_id": campaign_id}, {"_outbox": 0, "_outbox_pending": 0})
    if doc is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return doc


async def get_campaign(repo: Repository, campaign_id: str) -> Document:
    """One campaign."""
    return await _campaign(repo, campaign_id)


async def redesign(repo: Repository, campaign_id: str, variants: list[Document]) -> Document:
    """Replace the content variants; the campaign goes back to draft (review again)."""
    doc = await _campaign(repo, campaign_id)
    if doc["status"] in ("approved", "completed"):
        raise CampaignStateError(f"campaign {campaign_id} is {doc['status']}; create a new one")
    await update_aggregate(
        repo.campaigns,
        campaign_id,
        version=doc["version"],
        changes={"variants": variants, "status": "draft", "findings": [], "approver": None},
        events=[],
    )
    return await _campaign(repo, campaign_id)


async def review(
    repo: Repository,
    relay: OutboxRelay,
    topic: str,
    campaign_id: str,
    now: datetime,
    operator: str = "",
) -> Document:
    """Run the compliance checker: findings block the campaign, none await an approver.
    ``operator`` (who asked for the review) is kept on the campaign as ``reviewed_by``."""
    doc = await _campaign(repo, campaign_id)
    if doc["status"] not in ("draft", "blocked", "pending_approval"):
        raise CampaignStateError(f"campaign {campaign_id} is {doc['status']}")
    variants = [
        compliance.Variant(v["id"], v["channel"], v["title"], v["body"]) for v in doc["variants"]
    ]
    findings = compliance.check(variants, product_of(doc["product"]))
    status = "blocked" if findings else "pending_approval"
    await update_aggregate(
        repo.campaigns,
        campaign_id,
        version=doc["version"],
        changes={
            "status": status,
            "findings": [finding_view(f) for f in findings],
            "reviewed_at": now,
            "reviewed_by": operator,
        },
        events=[events.campaign_reviewed(topic, campaign_id, status, findings, "", now)],
    )
    relay.nudge(CAMPAIGNS, campaign_id)
    return await _campaign(repo, campaign_id)


async def approve(
    repo: Repository,
    relay: OutboxRelay,
    book: Book,
    topic: str,
    campaign_id: str,
    approver: str,
    now: datetime,
) -> Document:
    """Record the approver (not the author); only a reviewed campaign without findings."""
    doc = await _campaign(repo, campaign_id)
    if doc["status"] == "approved" and doc.get("approver") == approver:
        return doc  # a retry
    if doc["status"] == "blocked" or doc.get("findings"):
        raise ComplianceBlocked(
            f"campaign {campaign_id} has {len(doc['findings'])} compliance findings",
            findings=doc["findings"],
        )
    if doc["status"] != "pending_approval":
        raise CampaignStateError(f"campaign {campaign_id} is {doc['status']}; review it first")
    if approver == doc["author"]:
        raise SameApprover("the approver must not be the campaign's author")
    try:
        await update_aggregate(
            repo.campaigns,
            campaign_id,
            version=doc["version"],
            changes={"status": "approved", "approver": approver, "approved_at": now},
            events=[events.campaign_reviewed(topic, campaign_id, "approved", [], approver, now)],
        )
    except ConcurrentUpdate as exc:
        raise CampaignStateError(
            f"campaign {campaign_id} changed meanwhile; retry", retry=True
        ) from exc
    relay.nudge(CAMPAIGNS, campaign_id)
    book.invalidate()
    return await _campaign(repo, campaign_id)


async def start_execution(repo: Repository, campaign_id: str) -> Document:
    """Check that the campaign may run now and mark a run as started; the run itself is
    :func:`execute` (in the background: an audience may be large)."""
    doc = await _campaign(repo, campaign_id)
    if doc["status"] != "approved":
        if doc.get("findings"):
            raise ComplianceBlocked(
                f"campaign {campaign_id} has compliance findings", findings=doc["findings"]
            )
        raise CampaignStateError(f"campaign {campaign_id} is {doc['status']}, not approved")
    if not doc.get("segment_id"):
        raise CampaignStateError(f"campaign {campaign_id} has no audience segment")
    if doc.get("run", {}).get("state") == "running":
        raise CampaignStateError(f"campaign {campaign_id} is running already")
    run = {"run_id": new_id(), "state": "running", "outcomes": {}}
    result = await repo.campaigns.update_one(
        {"_id": campaign_id, "version": doc["version"]},
        {"$set": {"run": run, "version": doc["version"] + 1}},
    )
    if result.matched_count != 1:
        raise CampaignStateError(f"campaign {campaign_id} changed meanwhile; retry", retry=True)
    return {"campaign_id": campaign_id, **run}


async def claim_due_schedules(repo: Repository, now: datetime) -> list[str]:
    """Approved campaigns with an audience whose ``start_at`` has come, each claimed for its
    scheduled run exactly once; the ids claimed (their runs are :func:`execute`).

    The claim is a compare-and-set on the campaign (version, still approved, not yet
    scheduled, not running): two schedulers (replicas) or a scheduler racing a manual
    ``execute`` start one run between them, never two. A campaign running by hand when its
    time comes is claimed at a later tick, once that run is done.
    """
    claimed: list[str] = []
    # A scan of the (small) campaigns collection; FerretDB filters it in Go.
    due = repo.campaigns.find(
        {"status": "approved", "start_at": {"$lte": now}, "scheduled_run": {"$exists": False}},
        {"_id": 1, "version": 1, "segment_id": 1},
    )
    async for doc in due:
        if not doc.get("segment_id"):
            continue  # trigger-only: start_at has nothing to run
        run = {"run_id": new_id(), "state": "running", "outcomes": {}, "cause": "scheduled"}
        result = await repo.campaigns.update_one(
            {
                "_id": doc["_id"],
                "version": doc["version"],
                "status": "approved",
                "scheduled_run": {"$exists": False},
                "run.state": {"$ne": "running"},
            },
            {
                "$set": {"run": run, "scheduled_run": {"run_id": run["run_id"], "at": now}},
                "$inc": {"version": 1},
            },
        )
        if result.modified_count == 1:
            claimed.append(doc["_id"])
    return claimed


async def execute(
    repo: Repository, outreach: Outreach, campaign_id: str, *, concurrency: int = 16
) -> dict[str, int]:
    """Offer the campaign to every member of its segment (a scheduled run); outcome counts.

    Offers run ``concurrency`` at a time so the channel's latency overlaps; each party's
    offer is still one compare-and-set on its contact log.
    """
    doc = await _campaign(repo, campaign_id)
    outcomes: dict[str, int] = {}
    semaphore = asyncio.Semaphore(concurrency)

    async def one(profile: Document) -> None:
        async with semaphore:
            outcome = await outreach.offer(doc, profile["_id"], profile, cause="scheduled")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    # A scan: FerretDB filters in Go for anything but _id; a run is a batch job.
    cursor = repo.profiles.find(
        {f"segments.{doc['segment_id']}": True}, {"_applied": 0, "_outbox": 0}
    )
    pending: set[asyncio.Task[None]] = set()
    async for profile in cursor:
        task = asyncio.create_task(one(profile))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) >= 4 * concurrency:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        await asyncio.gather(*pending)
    await repo.campaigns.update_one(
        {"_id": campaign_id},
        {"$set": {"run.state": "done", "run.outcomes": outcomes}, "$inc": {"runs": 1}},
    )
    return outcomes


async def record_interaction(
    repo: Repository,
    relay: OutboxRelay,
    topic: str,
    campaign_id: str,
    party_id: str,
    stage: str,
    now: datetime,
) -> Document:
    """An open, click or conversion reported for a campaign member."""
    member_id = f"{campaign_id}:{party_id}"
    member = await repo.members.find_one({"_id": member_id})
    if member is None:
        raise NotFound(f"party {party_id} is not in campaign {campaign_id}")
    if stage in (member.get("stages") or {}):
        return member  # a retry: first report wins
    doc = await _campaign(repo, campaign_id)
    evts = []
    if stage == "converted":
        evts.append(
            events.offer_converted(
                topic,
                party_id=party_id,
                campaign_id=campaign_id,
                product_id=doc["product"]["_id"],
                holdout=member["arm"] == "holdout",
                at=now,
            )
        )
    elif member["arm"] == "treatment":
        evts.append(
            events.offer_interaction(
                topic,
                delivery_id=member.get("last_delivery_id", ""),
                party_id=party_id,
                campaign_id=campaign_id,
                channel=doc["variants"][0]["channel"],
                stage=stage,
                at=now,
            )
        )
    else:
        raise CampaignStateError(f"party {party_id} is in the holdout: nothing was sent to open")
    await update_aggregate(
        repo.members,
        member_id,
        version=int(member.get("version", 1)),
        changes={f"stages.{stage}": now},
        events=evts,
    )
    relay.nudge(MEMBERS, member_id)
    return await repo.members.find_one({"_id": member_id}, {"_outbox": 0}) or {}


async def evaluate(repo: Repository, campaign_id: str, confidence: float) -> Document:
    """Funnel, uplift against the holdout with its z-test and CI, cost per conversion."""
    doc = await _campaign(repo, campaign_id)
    funnel = {"sent": 0, "delivered": 0, "failed": 0, "opened": 0, "clicked": 0, "converted": 0}
    arms = {"treatment": [0, 0], "holdout": [0, 0]}
    async for m in repo.members.find({"campaign_id": campaign_id}, {"arm": 1, "stages": 1}):
        stages = m.get("stages") or {}
        arms[m["arm"]][0] += 1
        if "converted" in stages:
            arms[m["arm"]][1] += 1
        if m["arm"] == "treatment":
            for stage in funnel:
                if stage in stages:
                    funnel[stage] += 1
    suppressed: dict[str, int] = {}
    async for s in repo.suppressions.find({"campaign_id": campaign_id}, {"reason": 1}):
        suppressed[s["reason"]] = suppressed.get(s["reason"], 0) + 1
    cost = funnel["sent"] * int(doc.get("cost_per_contact_minor", 0))
    result: Document = {
        "campaign_id": campaign_id,
        "funnel": funnel,
        "suppressed": suppressed,
        "cost_minor": cost,
        "budget_minor": doc.get("budget_minor"),
        "spent_minor": int(doc.get("spent_minor", 0)),
        "cost_per_conversion_minor": cost_per_conversion(cost, arms["treatment"][1]),
    }
    try:
        uplift = two_proportion_z_test(
            arms["treatment"][0],
            arms["treatment"][1],
            arms["holdout"][0],
            arms["holdout"][1],
            confidence=confidence,
        )
        result["uplift"] = asdict(uplift)
    except NotEnoughData as exc:
        result["uplift"] = None
        result["uplift_unavailable"] = str(exc)
    return result


async def studio_event(
    repo: Repository,
    relay: OutboxRelay,
    topic: str,
    session_id: str,
    *,
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
        session = await repo.sessions.find_one({"_id": session_id})
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
            await update_aggregate(
                repo.sessions,
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
        return session_stats_view(await repo.sessions.find_one({"_id": session_id}) or {})
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
