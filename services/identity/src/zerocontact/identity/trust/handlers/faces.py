"""Face enrolment and verification (with liveness); a live match raises BASIC to VERIFIED."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from zerocontact.identity import metrics
from zerocontact.identity.domain.kyc import KycLevel
from zerocontact.identity.handlers.kyc import change_customer_level
from zerocontact.identity.trust import events, face, liveness
from zerocontact.identity.trust.errors import NotEnrolled
from zerocontact.identity.trust.handlers.context import TrustContext, own, seal_bytes
from zerocontact.identity.trust.repository import FACE_TEMPLATES, FACE_VERIFICATIONS
from zerocontact.platform.auth import Principal, check_step_up
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id


def seal_embedding(ctx: TrustContext, customer_id: str, vector: npt.NDArray[np.float64]) -> str:
    """The embedding encrypted for storage (bound to the customer)."""
    raw = base64.b64encode(vector.astype("<f8").tobytes()).decode()
    return ctx.identity.cipher.encrypt(raw, context=f"face.embedding:{customer_id}")


def open_embedding(ctx: TrustContext, customer_id: str, token: str) -> npt.NDArray[np.float64]:
    """The stored embedding decrypted."""
    raw = ctx.identity.cipher.decrypt(token, context=f"face.embedding:{customer_id}")
    return np.frombuffer(base64.b64decode(raw), dtype="<f8").astype(np.float64)


async def face_template(ctx: TrustContext, customer_id: str) -> tuple[dict[str, Any], Any]:
    """The customer's template document and embedding (409 ``face_not_enrolled`` without)."""
    doc = await ctx.repo.get_template(customer_id)
    if doc is None:
        raise NotEnrolled("enrol a face first")
    return doc, open_embedding(ctx, customer_id, doc["embedding_encrypted"])


async def enrol_face(
    customer_id: str, *, photo: bytes, keep_image: bool, principal: Principal,
    ctx: TrustContext,
) -> dict[str, Any]:  # fmt: skip
    """Enrol (or replace) the customer's face template; needs a recent AAL2 authentication."""
    own(principal, customer_id)
    check_step_up(principal, ctx.identity.settings.step_up_max_age_s)
    if await ctx.identity.parties.get_customer_doc(customer_id) is None:
        raise NotFound(f"customer {customer_id} does not exist")
    vector = await face.run_cpu(face.embed_photo, photo)
    template_id, now = new_id(), datetime.now(UTC)
    image_id = None
    if keep_image:  # only with consent, and encrypted
        sealed = seal_bytes(ctx, photo, f"face.image:{template_id}")
        image_id = await ctx.repo.store_file(ctx.repo.face_images, template_id, sealed)
    event = events.face_enrolled(
        customer_id=customer_id, template_id=template_id, image_kept=keep_image, at=now,
        topic=ctx.topic,
    )  # fmt: skip
    doc = {
        "_id": customer_id,
        "template_id": template_id,
        "embedding_encrypted": seal_embedding(ctx, customer_id, vector),
        "image_file_id": image_id,
        "enrolled_at": now,
    }
    await ctx.repo.put_template(doc, [event])
    ctx.identity.relay.nudge(FACE_TEMPLATES, customer_id)
    return {"template_id": template_id, "image_kept": keep_image, "enrolled_at": now}


async def verify_face(
    customer_id: str, *, photo: bytes, video: bytes | None, challenge: liveness.Challenge,
    requested: int, principal: Principal, ctx: TrustContext,
) -> dict[str, Any]:  # fmt: skip
    """Compare a probe (and a liveness video) with the template; a live match raises
    a BASIC customer to VERIFIED with the verification as evidence."""
    own(principal, customer_id)
    template_doc, template = await face_template(ctx, customer_id)
    probe = await face.run_cpu(face.embed_photo, photo)
    dist = face.distance(probe, template)
    matched = dist < face.MATCH_THRESHOLD
    live: liveness.LivenessResult | None = None
    if video is not None:
        live = await face.run_cpu(
            lambda: liveness.check_liveness(
                video, challenge=challenge, requested=requested, template=template
            )
        )
    passed = live is not None and live.passed
    verification_id, now = new_id(), datetime.now(UTC)
    label = f"{challenge}:{requested}" if live is not None else ""
    event = events.face_verified(
        customer_id=customer_id, verification_id=verification_id, matched=matched,
        distance=dist, liveness_checked=live is not None, liveness_passed=passed,
        challenge=label, at=now, topic=ctx.topic,
    )  # fmt: skip
    summary = {
        "id": verification_id, "at": now, "matched": matched, "distance": dist,
        "liveness_passed": passed and matched, "template_id": template_doc["template_id"],
    }  # fmt: skip
    doc = {"_id": verification_id, "customer_id": customer_id, **summary, "challenge": label,
           "liveness": None if live is None else {
               "passed": live.passed, "blinks": live.blinks, "yaw_shift": live.yaw_shift,
               "frames": live.frames_sampled, "max_distance": live.max_distance,
               "reasons": live.reasons}}  # fmt: skip
    await ctx.repo.add_verification(doc, [event], customer_id=customer_id, summary=summary)
    ctx.identity.relay.nudge(FACE_VERIFICATIONS, verification_id)
    metrics.face_verified(matched=matched, live=passed)
    level = await _raise_kyc(customer_id, doc, ctx=ctx)
    return {**doc, "id": verification_id, "kyc_level": level}


async def _raise_kyc(customer_id: str, verification: dict[str, Any], *, ctx: TrustContext) -> str:
    current = await ctx.identity.parties.get_customer_doc(customer_id)
    level = KycLevel(current["kyc_level"]) if current else KycLevel.NONE
    if not (verification["matched"] and verification["liveness_passed"]):
        return str(level)
    if level is not KycLevel.BASIC:
        return str(level)
    evidence = (
        f"face_verification={verification['id']} distance={verification['distance']:.4f} "
        f"liveness={verification['challenge']} passed"
    )
    customer = await change_customer_level(
        customer_id, KycLevel.VERIFIED, actor=f"party:{customer_id}",
        reason="verified by face recognition with liveness", evidence=evidence,
        ctx=ctx.identity,
    )  # fmt: skip
    return str(customer.kyc_level)
