"""Dual recordings: kept encrypted in GridFS with their facts, purged after retention."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from gridfs.errors import NoFile

from zerocontact.identity.trust import domain, events, face, liveness
from zerocontact.identity.trust.handlers.context import TrustContext, own, seal_bytes
from zerocontact.identity.trust.handlers.faces import face_template
from zerocontact.identity.trust.repository import DUAL_RECORDINGS
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id

log = logging.getLogger(__name__)


async def store_dual_recording(
    customer_id: str, *, video: bytes, template_id: str, steps: list[domain.ScriptStep],
    principal: Principal, ctx: TrustContext,
) -> dict[str, Any]:  # fmt: skip
    """Keep a dual recording in GridFS (encrypted) with its hash, duration, acknowledged
    script steps and whether the enrolled customer is the one on the sampled frames."""
    own(principal, customer_id)
    tmpl = await ctx.repo.get_contract_template(template_id)
    if tmpl is None:
        raise NotFound(f"contract template {template_id} does not exist")
    _, template = await face_template(ctx, customer_id)
    duration_ms, frames = await face.run_cpu(liveness.video_facts, video)
    domain.check_steps(steps, script=list(tmpl["dual_recording_script"]), duration_ms=duration_ms)
    distances = await face.run_cpu(liveness.match_frames, frames, template)
    face_matched = bool(distances) and max(distances) < face.MATCH_THRESHOLD
    recording_id, now = new_id(), datetime.now(UTC)
    retention = ctx.identity.settings.dual_recording_retention_days
    keep_until = domain.retain_until(tmpl["product_code"], stored_at=now, retention_days=retention)
    digest = domain.sha256_hex(video)
    sealed = seal_bytes(ctx, video, f"dual_recording:{recording_id}")
    file_id = await ctx.repo.store_file(ctx.repo.recording_files, recording_id, sealed)
    event = events.dual_recording_stored(
        recording_id=recording_id, customer_id=customer_id, product_code=tmpl["product_code"],
        content_sha256=digest, duration_ms=duration_ms, steps=len(steps),
        face_matched=face_matched, retain_until=keep_until, at=now, topic=ctx.topic,
    )  # fmt: skip
    doc = {
        "_id": recording_id, "customer_id": customer_id, "template_id": template_id,
        "product_code": tmpl["product_code"], "file_id": file_id, "content_sha256": digest,
        "size_bytes": len(video), "duration_ms": duration_ms,
        "steps": [{"step_id": s.step_id, "acknowledged_at_ms": s.acknowledged_at_ms}
                  for s in steps],
        "face_matched": face_matched, "frames_matched": len(distances),
        "max_distance": max(distances) if distances else None,
        "retain_until": keep_until, "stored_at": now,
    }  # fmt: skip
    await ctx.repo.add_recording(doc, [event])
    ctx.identity.relay.nudge(DUAL_RECORDINGS, recording_id)
    return doc


async def purge_expired_recordings(
    ctx: TrustContext, *, now: datetime, limit: int = 500
) -> list[str]:
    """Delete the GridFS files of dual recordings past ``retain_until``; keep each record
    (hash, duration, steps, retention date) with ``purged_at``. The file is deleted first:
    a crash before the record is marked only makes the next run find no file (ignored).
    Returns the ids purged in this run (at most ``limit``)."""
    purged = []
    for rec in await ctx.repo.expired_recordings(now, limit=limit):
        if rec.get("file_id") is not None:
            with contextlib.suppress(NoFile):  # deleted by a run that died before marking
                await ctx.repo.recording_files.delete(rec["file_id"])
        retain_until = rec["retain_until"]
        if retain_until.tzinfo is None:
            retain_until = retain_until.replace(tzinfo=UTC)
        event = events.dual_recording_purged(
            recording_id=rec["_id"], customer_id=rec["customer_id"],
            product_code=rec["product_code"], content_sha256=rec["content_sha256"],
            retain_until=retain_until, at=now, topic=ctx.topic,
        )  # fmt: skip
        if await ctx.repo.mark_recording_purged(rec["_id"], at=now, events=[event]):
            purged.append(rec["_id"])
            ctx.identity.relay.nudge(DUAL_RECORDINGS, rec["_id"])
            log.info("dual recording purged", extra={"recording_id": rec["_id"]})
    return purged
