"""E-contracts: templates, drafts, signing through the Merkle log, tree heads."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from zerocontact.identity.repository import ConcurrentUpdate
from zerocontact.identity.trust import domain, events
from zerocontact.identity.trust.errors import ContractStateError, SigningPending
from zerocontact.identity.trust.handlers.context import TrustContext, own
from zerocontact.identity.trust.log import HEADS
from zerocontact.identity.trust.repository import CONTRACTS
from zerocontact.identity.trust.treehead import Receipt, TreeHead, canonical_json
from zerocontact.platform.auth import Principal, check_step_up
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.telemetry import current_traceparent, deferred_span

log = logging.getLogger(__name__)


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
    own(principal, customer_id)
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
    contract_id: str, *, principal: Principal, ctx: TrustContext
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
    own(principal, contract["customer_id"])
    if contract["status"] == "DRAFT" and queued is None:
        await _queue_leaf(contract, principal=principal, ctx=ctx)
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


async def _queue_leaf(contract: dict[str, Any], *, principal: Principal, ctx: TrustContext) -> None:
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
    # nothing (duplicate key) and waits for the same leaf, so a contract has one leaf. The
    # leaf keeps the request's trace context: the sequencer integrates it later (maybe on
    # another replica) and its completion continues that trace.
    await ctx.queue.enqueue(
        {"_id": contract_id, "leaf": canonical_json(evidence), "queued_at": now,
         "signed_at": now, "traceparent": current_traceparent()}
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
    sweep, or by the request on another replica) answers with its stored receipt. The
    completion continues the trace of the request that queued the leaf (the sweep's, or a
    retried request's, is linked to it)."""
    with deferred_span(
        "trust.contract.complete",
        traceparent=(queued or {}).get("traceparent"),
        attributes={"zerocontact.contract_id": str(contract_id or (queued or {}).get("_id"))},
    ):
        return await _complete_signing(ctx, queued, contract_id=contract_id)


async def _complete_signing(
    ctx: TrustContext, queued: dict[str, Any] | None, *, contract_id: str | None
) -> dict[str, Any]:
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
