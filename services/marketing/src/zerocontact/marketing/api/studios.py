"""Routes of live studios: studios, their sessions, viewer events and reach."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import Field

from zerocontact.marketing import handlers
from zerocontact.marketing.api.deps import (
    Body,
    Id,
    PathMismatch,
    back_office_router,
    deps_of,
    once,
    public,
)
from zerocontact.platform.deps import IdempotencyKey

router = back_office_router()


class StudioIn(Body):
    studio_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    branch: str = Field(default="", max_length=100)


class SessionIn(Body):
    session_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = Field(min_length=1, max_length=64)
    starts_at: datetime
    product_ids: list[str] = Field(default_factory=list, max_length=20)


class ViewerEventIn(Body):
    event_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    party_id: str = Field(min_length=1, max_length=64)
    kind: Literal["joined", "left", "commented", "card_clicked", "converted"]
    product_id: str = ""
    at: datetime


@router.put("/studios/{studio_id}")
async def put_studio(studio_id: Id, body: StudioIn, key: IdempotencyKey, request: Request) -> Any:
    """Add or rename a live studio."""
    if body.studio_id != studio_id:
        raise PathMismatch("studio_id in the body differs from the path", field="studio_id")

    async def compute() -> Any:
        doc = {"_id": studio_id, "name": body.name, "branch": body.branch}
        await handlers.put_studio(deps_of(request).repo, doc)
        return public(doc)

    return await once(request, "studio", key, body.model_dump(), compute)


@router.post("/studios/{studio_id}/sessions", status_code=201)
async def post_session(
    studio_id: Id, body: SessionIn, key: IdempotencyKey, request: Request
) -> Any:
    """Schedule a session of a studio with its host."""
    deps = deps_of(request)
    await handlers.studio_exists(deps.repo, studio_id)

    async def compute() -> Any:
        doc = {
            "_id": body.session_id,
            "studio_id": studio_id,
            "host": body.host,
            "starts_at": body.starts_at,
            "product_ids": body.product_ids,
            "stats": {},
            "seen": {},
            "reach": {},
        }
        return await handlers.schedule_session(deps.repo, doc)

    return await once(request, f"session:{studio_id}", key, body.model_dump(mode="json"), compute)


@router.post("/studio-sessions/{session_id}/events")
async def post_viewer_event(session_id: Id, body: ViewerEventIn, request: Request) -> Any:
    """One viewer event (idempotent by its ``event_id``); returns the session's statistics."""
    deps = deps_of(request)
    return await handlers.studio_event(
        deps.repo,
        session_id,
        relay=deps.relay,
        topic=deps.settings.topic,
        event_id=body.event_id,
        party_id=body.party_id,
        kind=body.kind,
        product_id=body.product_id,
        at=body.at,
        reach_time_zone=deps.settings.default_time_zone,
    )


@router.get("/studio-sessions/{session_id}")
async def get_session(session_id: Id, request: Request) -> Any:
    """A session's statistics and, from the signals, its concurrent viewers."""
    return await handlers.session_view(deps_of(request).repo, session_id)


@router.get("/studios/{studio_id}/reach")
async def studio_reach(
    studio_id: Id, request: Request, day: Annotated[str, Query(pattern=r"^[0-9]{8}$")]
) -> Any:
    """Distinct viewers of a studio's sessions on a local day (YYYYMMDD)."""
    return await handlers.studio_reach(deps_of(request).repo, studio_id, day=day)
