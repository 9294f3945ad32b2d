"""Use cases of the trust services: faces, liveness, dual recording, e-contracts, the log."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridfs.errors import NoFile

from zerocontact.identity.domain.errors import Forbidden
from zerocontact.identity.domain.kyc import KycLevel
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.handlers.kyc import change_customer_level
from zerocontact.identity.repository import ConcurrentUpdate
from zerocontact.identity.trust import domain, events, face, liveness
from zerocontact.identity.trust.errors import ContractStateError, NotEnrolled, SigningPending
from zerocontact.identity.trust.log import HEADS, MerkleLog
from zerocontact.identity.trust.repository import (
    CONTRACTS,
    DUAL_RECORDINGS,
    FACE_TEMPLATES,
    FACE_VERIFICATIONS,
    TrustRepository,
)
from zerocontact.identity.trust.sequencer import LeafQueue, Sequencer
from zerocontact.identity.trust.treehead import Receipt, TreeHead, canonical_json
from zerocontact.platform.auth import Principal, check_step_up
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id

log = logging.getLogger(__name__)


@dataclass
class TrustContext:
    """What the trust handlers need, built once in the app's lifespan."""

    identity: IdentityContext
    repo: TrustRepository
    log: MerkleLog
    log_key: Ed25519PrivateKey
    queue: LeafQueue
    sequencer: Sequencer | None = None

    @property
    def topic(self) -> str:
        """identity.events.v1."""
        return self.identity.settings.events_topic


def _own(principal: Principal, customer_id: str) -> None:
    if principal.subject != customer_id:
        raise Forbidden("a customer can only act for themselves")


def _seal_embedding(ctx: TrustContext, customer_id: str, vector: npt.NDArray[np.float64]) -> str:
    raw = base64.b64encode(vector.astype("<f8").tobytes()).decode()
    return ctx.identity.cipher.encrypt(raw, context=f"face.embedding:{customer_id}")


def _open_embedding(ctx: TrustContext, customer_id: str, token: str) -> npt.NDArray[np.float64]:
    raw = ctx.identity.cipher.decrypt(token, context=f"face.embedding:{customer_id}")
    return np.frombuffer(base64.b64decode(raw), dtype="<f8").astype(np.float64)


def _seal_bytes(ctx: TrustContext, data: bytes, context: str) -> bytes:
    return ctx.identity.cipher.encrypt(base64.b64encode(data).decode(), context=context).encode()


async def _template(ctx: TrustContext, customer_id: str) -> tuple[dict[str, Any], Any]:
    doc = await ctx.repo.get_template(customer_id)
    if doc is None:
        raise NotEnrolled("enrol a face first")
    return doc, _open_embedding(ctx, customer_id, doc["embedding_encrypted"])


async def enrol_face(
    customer_id: str, *, photo: bytes, keep_image: bool, principal: Principal,
    ctx: TrustContext, traceparent: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Enrol (or replace) the customer's face template; needs a recent AAL2 authentication."""
    _own(principal, customer_id)
    check_step_up(principal, ctx.identity.settings.step_up_max_age_s)
    if await ctx.identity.parties.get_customer_doc(customer_id) is None:
        raise NotFound(f"customer {customer_id} does not exist")
    vector = await face.run_cpu(face.embed_photo, photo)
    template_id, now = new_id(), datetime.now(UTC)
    image_id = None
    if keep_image:  # only with consent, and encrypted
        sealed = _seal_bytes(ctx, photo, f"face.image:{template_id}")
        image_id = await ctx.repo.store_file(ctx.repo.face_images, template_id, sealed)
    event = events.face_enrolled(
        customer_id=customer_id, template_id=template_id, image_kept=keep_image, at=now,
        topic=ctx.topic, traceparent=traceparent,
    )  # fmt: skip
    doc = {
        "_id": customer_id,
        "template_id": template_id,
        "embedding_encrypted": _seal_embedding(ctx, customer_id, vector),
        "image_file_id": image_id,
        "enrolled_at": now,
    }
    await ctx.repo.put_template(doc, [event])
    ctx.identity.relay.nudge(FACE_TEMPLATES, customer_id)
    return {"template_id": template_id, "image_kept": keep_image, "enrolled_at": now}


async def verify_face(
    customer_id: str, *, photo: bytes, video: bytes | None, challenge: liveness.Challenge,
    requested: int, principal: Principal, ctx: TrustContext, traceparent: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Compare a probe (and a liveness video) with the template; a live match raises
    a BASIC customer to VERIFIED with the verification as evidence."""
    _own(principal, customer_id)
    template_doc, template = await _template(ctx, customer_id)
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
        challenge=label, at=now, topic=ctx.topic, traceparent=traceparent,
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
    level = await _raise_kyc(customer_id, doc, ctx=ctx, traceparent=traceparent)
    return {**doc, "id": verification_id, "kyc_level": level}


async def _raise_kyc(
    customer_id: str, verification: dict[str, Any], *, ctx: TrustContext, traceparent: str | None
) -> str:
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
        ctx=ctx.identity, traceparent=traceparent,
    )  # fmt: skip
    return str(customer.kyc_level)


async def store_dual_recording(
    customer_id: str, *, video: bytes, template_id: str, steps: list[domain.ScriptStep],
    principal: Principal, ctx: TrustContext, traceparent: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Keep a dual recording in GridFS (encrypted) with its hash, duration, acknowledged
    script steps and whether the enrolled customer is the one on the sampled frames."""
    _own(principal, customer_id)
    tmpl = await ctx.repo.get_contract_template(template_id)
    if tmpl is None:
        raise NotFound(f"contract template {template_id} does not exist")
    _, template = await _template(ctx, customer_id)
    duration_ms, frames = await face.run_cpu(liveness.video_facts, video)
    domain.check_steps(steps, script=list(tmpl["dual_recording_script"]), duration_ms=duration_ms)
    distances = await face.run_cpu(liveness.match_frames, frames, template)
    face_matched = bool(distances) and max(distances) < face.MATCH_THRESHOLD
    recording_id, now = new_id(), datetime.now(UTC)
    retention = ctx.identity.settings.dual_recording_retention_days
    keep_until = domain.retain_until(tmpl["product_code"], stored_at=now, retention_days=retention)
    digest = domain.sha256_hex(video)
    sealed = _seal_bytes(ctx, video, f"dual_recording:{recording_id}")
    file_id = await ctx.repo.store_file(ctx.repo.recording_files, recording_id, sealed)
    event = events.dual_recording_stored(
        recording_id=recording_id, customer_id=customer_id, product_code=tmpl["product_code"],
        content_sha256=digest, duration_ms=duration_ms, steps=len(steps),
        face_matched=face_matched, retain_until=keep_until, at=now, topic=ctx.topic,
        traceparent=traceparent,
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


async def add_contract_template(
    *, template_id: str, title: str, body: str, product_code: str, script: list[str],
    ctx: TrustContext,
) -> dict[str, Any]:  # fmt: skip
    """A reviewer publishes an immutable template (a new version is a new id)."""
    fields = sorted(domain.template_fields(body))
    doc = {"_id": template_id, "title": title, "body": body, "product_code": product_code,
           "fields": fields, "dual_recording_script": script,
           "created_at": datetime.now(UTC)}  # fmt: skip
    if not await ctx.repo.add_contract_template(doc):
        raise ContractStateError(f"template {template_id} exists; publish a new version id")
    return doc


async def draft_contract(
    customer_id: str, *, template_id: str, fields: dict[str, str],
    dual_recording_id: str | None, principal: Principal, ctx: TrustContext,
) -> dict[str, Any]:  # fmt: skip
    """Render a contract for the customer from a template."""
    _own(principal, customer_id)
    tmpl = await ctx.repo.get_contract_template(template_id)
    if tmpl is None:
        raise NotFound(f"contract template {template_id} does not exist")
    text = domain.render(tmpl["body"], fields)
    recording_sha = None
    if tmpl["dual_recording_script"] or dual_recording_id:
        rec = await ctx.repo.get_recording(dual_recording_id) if dual_recording_id else None
        if rec is None or rec["customer_id"] != customer_id or rec["template_id"] != template_id:
            raise ContractStateError("this contract needs the customer's dual recording of it")
        if not rec["face_matched"]:
            raise ContractStateError("the dual recording does not show the enrolled customer")
        recording_sha = rec["content_sha256"]
    doc = {
        "_id": new_id(), "customer_id": customer_id, "template_id": template_id,
        "title": tmpl["title"], "text": text,
        "contract_sha256": domain.sha256_hex(text.encode()), "status": "DRAFT",
        "dual_recording_id": dual_recording_id, "dual_recording_sha256": recording_sha,
        "created_at": datetime.now(UTC),
    }  # fmt: skip
    await ctx.repo.add_contract(doc)
    return doc


async def sign_contract(
    contract_id: str, *, principal: Principal, ctx: TrustContext, traceparent: str | None
) -> dict[str, Any]:
    """Sign: AAL2 recent, a recent live face verification; the evidence package is queued as
    a leaf of the log, and once the sequencer (any replica) has integrated it the customer
    gets a receipt verifiable offline. If that takes longer than ``trust_sign_wait_s`` this
    raises :class:`SigningPending`: the contract stays SIGNING, and a retry (or the sweep)
    completes it from the same queued leaf."""
    # The queued leaf is read before the contract: completion marks the contract SIGNED and
    # then drops the leaf, so "no leaf, then a DRAFT/SIGNING contract" proves no completed
    # leaf exists and queueing one cannot add a second leaf for this contract.
    queued = await ctx.queue.get(contract_id)
    contract = await ctx.repo.get_contract(contract_id)
    if contract is None:
        raise NotFound(f"contract {contract_id} does not exist")
    _own(principal, contract["customer_id"])
    if contract["status"] == "DRAFT" and queued is None:
        await _queue_leaf(contract, principal=principal, ctx=ctx, traceparent=traceparent)
    elif contract["status"] != "SIGNING" and queued is None:
        domain.ensure_draft(contract["status"])  # SIGNED: 409
    # SIGNING (a retry after 202, or a concurrent double submission): the leaf is queued
    # already; wait for the same one. Its checks passed when it was queued.
    settings = ctx.identity.settings
    if ctx.sequencer is None:
        raise RuntimeError("the trust log sequencer is not running")
    ctx.sequencer.wake()
    doc = await ctx.sequencer.wait(contract_id, within_s=settings.trust_sign_wait_s)
    if doc is not None and doc.get("index") is None:
        raise SigningPending("the signature is queued in the log; retry or poll the contract")
    return await complete_signing(ctx, doc, contract_id=contract_id)


async def _queue_leaf(
    contract: dict[str, Any], *, principal: Principal, ctx: TrustContext, traceparent: str | None
) -> None:
    contract_id, customer_id = contract["_id"], contract["customer_id"]
    settings = ctx.identity.settings
    check_step_up(principal, settings.step_up_max_age_s)
    tmpl_doc = await ctx.repo.get_template(customer_id)
    last = (tmpl_doc or {}).get("last_verification")
    now = datetime.now(UTC)
    facts = None
    if last is not None and last.get("liveness_passed"):
        at = last["at"] if last["at"].tzinfo else last["at"].replace(tzinfo=UTC)
        facts = domain.FaceFacts(last["id"], at, float(last["distance"]), True)
    facts = domain.check_face_recent(facts, now=now, max_age_s=settings.face_verification_max_age_s)
    evidence = domain.evidence_package(
        contract_id=contract_id, template_id=contract["template_id"],
        contract_sha256=contract["contract_sha256"], signer=customer_id,
        auth=domain.AuthenticationFacts(
            principal.aal, principal.methods, principal.auth_time, principal.session_id
        ),
        face=facts, dual_recording_sha256=contract.get("dual_recording_sha256"), signed_at=now,
    )  # fmt: skip
    # The queued leaf, keyed by the contract, is the claim: a double submission inserts
    # nothing (duplicate key) and waits for the same leaf, so a contract has one leaf.
    await ctx.queue.enqueue(
        {"_id": contract_id, "leaf": canonical_json(evidence), "queued_at": now,
         "signed_at": now, "traceparent": traceparent}
    )  # fmt: skip
    # Informational for readers of the contract (GET shows SIGNING while the leaf is queued);
    # losing this race or crashing before it is harmless: completion accepts DRAFT too.
    await ctx.repo.claim_for_signing(contract_id, version=contract["version"])


async def complete_signing(
    ctx: TrustContext, queued: dict[str, Any] | None, *, contract_id: str | None = None
) -> dict[str, Any]:
    """Finish the contract of an integrated queued leaf: receipt (inclusion proof under the
    head the sequencer published at the leaf's batch), SIGNED with ``ContractSigned`` in one
    write, then drop the queued leaf. Idempotent: a contract completed meanwhile (by the
    sweep, or by the request on another replica) answers with its stored receipt."""
    contract_id = contract_id or (queued or {}).get("_id")
    contract = await ctx.repo.get_contract(str(contract_id))
    if contract is None:
        raise NotFound(f"contract {contract_id} does not exist")
    if contract["status"] == "SIGNED" or queued is None:
        if queued is not None:
            await ctx.queue.remove(contract["_id"])
        return _signed_view(contract)
    index, tree_size = int(queued["index"]), int(queued["tree_size"])
    head = await ctx.log.head_at(tree_size)
    if head is None:  # the sequencer publishes it before marking; absent means tampering
        raise RuntimeError(f"no tree head at size {tree_size} for leaf {index}")
    if ctx.log.size < tree_size:  # this replica's view of the log is behind the sequencer's
        await ctx.log.refresh()
    leaf = bytes(queued["leaf"])
    receipt = Receipt(leaf, index, await ctx.log.inclusion(index, tree_size), head)
    evidence = json.loads(leaf)
    signed_at = queued["signed_at"]
    signed_at = signed_at if signed_at.tzinfo else signed_at.replace(tzinfo=UTC)
    event = events.contract_signed(
        contract_id=contract["_id"], customer_id=contract["customer_id"],
        template_id=contract["template_id"], contract_sha256=contract["contract_sha256"],
        leaf_index=index, tree_size=tree_size, at=signed_at, topic=ctx.topic,
        traceparent=queued.get("traceparent"),
    )  # fmt: skip
    fields = {"evidence": evidence, "leaf_index": index, "receipt": receipt.to_json()}
    try:
        await ctx.repo.mark_signed(
            contract["_id"], version=contract["version"], at=signed_at, events=[event],
            fields=fields,
        )  # fmt: skip
    except ConcurrentUpdate:
        again = await ctx.repo.get_contract(contract["_id"])
        if again is None or again["status"] != "SIGNED":
            raise ContractStateError("the contract changed while it was signed") from None
        contract = again  # completed by another replica or the sweep meanwhile
    else:
        contract = {**contract, **fields, "status": "SIGNED"}
        ctx.identity.relay.nudge(CONTRACTS, contract["_id"])
        log.info("contract signed", extra={"contract_id": contract["_id"], "leaf_index": index})
    await ctx.queue.remove(contract["_id"])
    return _signed_view(contract)


def _signed_view(contract: dict[str, Any]) -> dict[str, Any]:
    if contract.get("status") != "SIGNED":
        raise ContractStateError(f"the contract is {contract.get('status')}, not SIGNED")
    return {"contract_id": contract["_id"], "status": "SIGNED",
            "leaf_index": contract["leaf_index"], "receipt": contract["receipt"]}  # fmt: skip


async def publish_head(ctx: TrustContext) -> TreeHead:
    """Sign a head of the current size; publish it (stored + TreeHeadSigned) if it is new."""
    head = ctx.log.sign_head(ctx.log_key)
    if await ctx.log.store_head(head, [events.tree_head_signed(head, topic=ctx.topic)]):
        ctx.identity.relay.nudge(HEADS, f"{head.tree_size:016d}")
        return head
    return await ctx.log.head_at(head.tree_size) or head


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
