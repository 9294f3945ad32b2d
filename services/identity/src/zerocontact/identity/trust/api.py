"""HTTP API of the trust services (faces, liveness, dual recording, e-contracts, the log).

Photos and videos travel base64-encoded in JSON (identity has no multipart parser and the
bodies are small: a photo, a few seconds of video). A 422 names the bad field and never
echoes its value; a photo the models cannot use is a 422 whose ``code`` says why
(``no_face``, ``several_faces``, ``face_too_small``, ``face_too_blurred``, ``unusable_image``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from zerocontact.identity.api.deps import idempotent, operator_only
from zerocontact.identity.trust import domain, handlers, liveness
from zerocontact.identity.trust.errors import SigningPending
from zerocontact.identity.trust.handlers import TrustContext
from zerocontact.identity.trust.merkle import ProofError
from zerocontact.platform.deps import Caller, IdempotencyKey
from zerocontact.platform.errors import Invalid, NotFound

router = APIRouter(tags=["trust"])
PartyId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
ObjectId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
MAX_PHOTO_B64 = 11_000_000  # ~8 MB decoded
MAX_VIDEO_B64 = 40_000_000  # ~30 MB decoded


class OutOfRange(Invalid):
    """A tree size or leaf index the log does not have."""

    code = "out_of_range"


def trust(request: Request) -> TrustContext:
    """The trust context built in the lifespan."""
    ctx: TrustContext = request.app.state.trust
    return ctx


Trust = Annotated[TrustContext, Depends(trust)]


def _decode(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrolFaceRequest(_Body):
    """A photo of the customer's face; kept only with consent."""

    photo: str = Field(min_length=4, max_length=MAX_PHOTO_B64, description="JPEG/PNG, base64")
    keep_image: bool = Field(default=False, description="the customer consents to keeping it")

    @field_validator("photo")
    @classmethod
    def _b64(cls, v: str) -> str:
        _decode(v)
        return v


class VerifyFaceRequest(_Body):
    """A probe photo and, for liveness (and KYC VERIFIED), a short video of the challenge."""

    photo: str = Field(min_length=4, max_length=MAX_PHOTO_B64)
    video: str | None = Field(default=None, min_length=4, max_length=MAX_VIDEO_B64)
    challenge: liveness.Challenge = liveness.Challenge.BLINK

    @field_validator("photo", "video")
    @classmethod
    def _b64(cls, v: str | None) -> str | None:
        _decode(v)
        return v


class StepAck(_Body):
    """One script step the customer acknowledged, at an offset into the recording."""

    step_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    acknowledged_at_ms: int = Field(ge=0)


class DualRecordingRequest(_Body):
    """The recording of a contract's sale, with the script steps acknowledged."""

    template_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    video: str = Field(min_length=4, max_length=MAX_VIDEO_B64)
    steps: list[StepAck] = Field(max_length=100)

    @field_validator("video")
    @classmethod
    def _b64(cls, v: str) -> str:
        _decode(v)
        return v


class ContractTemplateRequest(_Body):
    """A contract template: ``${field}`` placeholders; an optional dual-recording script."""

    template_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=200_000)
    product_code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    dual_recording_script: list[
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    ] = Field(default_factory=list, max_length=50)


class DraftContractRequest(_Body):
    """Fields to fill the template with."""

    template_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    fields: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
        Annotated[str, Field(max_length=2_000)],
    ] = Field(max_length=100)
    dual_recording_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$")


class JsonView(BaseModel):
    """A response body (free-form JSON produced by the handlers)."""

    model_config = ConfigDict(extra="allow")


def _view(doc: dict[str, Any], *, drop: tuple[str, ...] = ()) -> JsonView:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k in drop or k.startswith("_outbox"):
            continue
        key = "id" if k == "_id" else k
        out[key] = v.isoformat() if isinstance(v, datetime) else v
    return JsonView(**out)


def _sha(*parts: str | None) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update((p or "").encode())
        h.update(b"\x00")
    return h.hexdigest()


@router.post("/v1/customers/{customer_id}/face", status_code=201, response_model=JsonView)
async def enrol_face(
    customer_id: PartyId, body: EnrolFaceRequest, key: IdempotencyKey, request: Request,
    caller: Caller, ctx: Trust,
) -> JSONResponse:  # fmt: skip
    """Enrol (or replace) the face template; needs a recent two-factor authentication."""
    photo = _decode(body.photo) or b""

    async def run() -> JsonView:
        result = await handlers.enrol_face(
            customer_id, photo=photo, keep_image=body.keep_image, principal=caller, ctx=ctx,
        )  # fmt: skip
        return _view(result)

    payload = {"photo": _sha(body.photo), "keep": body.keep_image}
    return await idempotent(
        request, key=key, scope=f"POST face {customer_id}", payload=payload, run=run,
        status_code=201,
    )  # fmt: skip


@router.post(
    "/v1/customers/{customer_id}/face/verifications", status_code=201, response_model=JsonView
)
async def verify_face(
    customer_id: PartyId, body: VerifyFaceRequest, key: IdempotencyKey, request: Request,
    caller: Caller, ctx: Trust,
) -> JSONResponse:  # fmt: skip
    """Compare a probe photo (and a liveness video) with the template; a live match makes a
    BASIC customer VERIFIED."""
    blinks = ctx.identity.settings.liveness_blinks
    requested = blinks if body.challenge is liveness.Challenge.BLINK else 1

    async def run() -> JsonView:
        result = await handlers.verify_face(
            customer_id, photo=_decode(body.photo) or b"", video=_decode(body.video),
            challenge=body.challenge, requested=requested, principal=caller, ctx=ctx,
        )  # fmt: skip
        return _view(result, drop=("customer_id",))

    payload = {"photo": _sha(body.photo), "video": _sha(body.video), "c": str(body.challenge)}
    return await idempotent(
        request, key=key, scope=f"POST face verification {customer_id}", payload=payload,
        run=run, status_code=201,
    )  # fmt: skip


@router.post(
    "/v1/customers/{customer_id}/dual-recordings", status_code=201, response_model=JsonView
)
async def store_dual_recording(
    customer_id: PartyId, body: DualRecordingRequest, key: IdempotencyKey, request: Request,
    caller: Caller, ctx: Trust,
) -> JSONResponse:  # fmt: skip
    """Store the video recording of a sale (双录) with its evidence."""
    steps = [domain.ScriptStep(s.step_id, s.acknowledged_at_ms) for s in body.steps]

    async def run() -> JsonView:
        doc = await handlers.store_dual_recording(
            customer_id, video=_decode(body.video) or b"", template_id=body.template_id,
            steps=steps, principal=caller, ctx=ctx,
        )  # fmt: skip
        return _view(doc, drop=("file_id",))

    payload = {"video": _sha(body.video), "t": body.template_id,
               "steps": [s.model_dump() for s in body.steps]}  # fmt: skip
    return await idempotent(
        request, key=key, scope=f"POST dual recording {customer_id}", payload=payload, run=run,
        status_code=201,
    )  # fmt: skip


@router.post(
    "/v1/contract-templates", status_code=201, response_model=JsonView,
    dependencies=[Depends(operator_only)],
)  # fmt: skip
async def add_contract_template(body: ContractTemplateRequest, ctx: Trust) -> JsonView:
    """Publish an immutable contract template (reviewer back office, ``X-Operator-Key``)."""
    doc = await handlers.add_contract_template(
        template_id=body.template_id, title=body.title, body=body.body,
        product_code=body.product_code, script=body.dual_recording_script, ctx=ctx,
    )  # fmt: skip
    return _view(doc)


@router.post("/v1/customers/{customer_id}/contracts", status_code=201, response_model=JsonView)
async def draft_contract(
    customer_id: PartyId, body: DraftContractRequest, key: IdempotencyKey, request: Request,
    caller: Caller, ctx: Trust,
) -> JSONResponse:  # fmt: skip
    """Render a contract from a template for the customer to read and sign."""

    async def run() -> JsonView:
        doc = await handlers.draft_contract(
            customer_id, template_id=body.template_id, fields=body.fields,
            dual_recording_id=body.dual_recording_id, principal=caller, ctx=ctx,
        )  # fmt: skip
        return _view(doc)

    return await idempotent(
        request, key=key, scope=f"POST contract {customer_id}",
        payload={"p": _sha(body.model_dump_json())}, run=run, status_code=201,
    )  # fmt: skip


@router.get("/v1/contracts/{contract_id}", response_model=JsonView)
async def get_contract(contract_id: ObjectId, caller: Caller, ctx: Trust) -> JsonView:
    """The contract (text, hash, status, and the receipt once signed), for its customer."""
    doc = await ctx.repo.get_contract(contract_id)
    if doc is None or doc["customer_id"] != caller.subject:
        raise NotFound(f"contract {contract_id} does not exist")
    return _view(doc)


@router.post("/v1/contracts/{contract_id}/signature", status_code=201, response_model=JsonView)
async def sign_contract(
    contract_id: ObjectId, key: IdempotencyKey, request: Request, caller: Caller, ctx: Trust,
) -> JSONResponse:  # fmt: skip
    """Sign (AAL2 and a recent live face verification); returns the log receipt."""

    async def run() -> JsonView:
        result = await handlers.sign_contract(contract_id, principal=caller, ctx=ctx)
        return JsonView(**result)

    try:
        return await idempotent(
            request, key=key, scope=f"POST signature {contract_id}", payload={}, run=run,
            status_code=201,
        )  # fmt: skip
    except SigningPending as pending:
        # Not stored as the key's response (idempotent() released it): a retry with the same
        # key waits for the same queued leaf and gets the receipt.
        body = {"contract_id": contract_id, "status": "SIGNING", "detail": pending.detail,
                "poll": f"/v1/contracts/{contract_id}"}  # fmt: skip
        retry = str(max(1, round(ctx.identity.settings.trust_log_lease_s / 2)))
        return JSONResponse(body, status_code=202, headers={"Retry-After": retry})


@router.get("/v1/trust-log/public-key", response_class=PlainTextResponse)
async def public_key(ctx: Trust) -> PlainTextResponse:
    """The log's Ed25519 public key (PEM, SubjectPublicKeyInfo)."""
    pem = ctx.log_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PlainTextResponse(pem.decode(), media_type="application/x-pem-file")


@router.get("/v1/trust-log/tree-head", response_model=JsonView)
async def latest_tree_head(ctx: Trust) -> JsonView:
    """The latest signed tree head (auditors, co-lending partner banks)."""
    head = await ctx.log.latest_head()
    if head is None:  # only the sequencer publishes; it does as soon as it takes the lease
        raise NotFound("no tree head has been published yet")
    return JsonView(**head.to_json())


@router.get("/v1/trust-log/tree-heads/{tree_size}", response_model=JsonView)
async def tree_head_at(tree_size: Annotated[int, Path(ge=0)], ctx: Trust) -> JsonView:
    """The signed tree head published at ``tree_size``, if one was."""
    head = await ctx.log.head_at(tree_size)
    if head is None:
        raise NotFound(f"no tree head was published at size {tree_size}")
    return JsonView(**head.to_json())


@router.get("/v1/trust-log/proofs/inclusion", response_model=JsonView)
async def inclusion_proof(
    ctx: Trust, leaf_index: Annotated[int, Query(ge=0)], tree_size: Annotated[int, Query(ge=1)]
) -> JsonView:
    """Audit path of a leaf in the tree of ``tree_size`` leaves."""
    if tree_size > ctx.log.size:  # another replica may have grown the log since
        await ctx.log.refresh()
    if leaf_index >= tree_size or tree_size > ctx.log.size:
        raise OutOfRange("leaf_index must be below tree_size, tree_size at most the log's size")
    path = await ctx.log.inclusion(leaf_index, tree_size)
    return JsonView.model_validate(
        {"leaf_index": leaf_index, "tree_size": tree_size,
         "inclusion_path": [base64.b64encode(p).decode() for p in path]}
    )  # fmt: skip


@router.get("/v1/trust-log/proofs/consistency", response_model=JsonView)
async def consistency_proof(
    ctx: Trust, first: Annotated[int, Query(ge=1)], second: Annotated[int, Query(ge=1)]
) -> JsonView:
    """Proof that the tree of ``first`` leaves is a prefix of the tree of ``second``."""
    if second > ctx.log.size:  # another replica may have grown the log since
        await ctx.log.refresh()
    if first > second or second > ctx.log.size:
        raise OutOfRange("first must be at most second, second at most the log's size")
    try:
        proof = await ctx.log.consistency(first, second)
    except (ValueError, ProofError) as exc:
        raise OutOfRange(str(exc)) from exc
    return JsonView.model_validate(
        {"first": first, "second": second, "proof": [base64.b64encode(p).decode() for p in proof]}
    )
