"""Routes of the catalog and segments: products (risk levels, rates) and segment rules."""

from __future__ import annotations

from typing import Any

from fastapi import Request
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
from zerocontact.marketing.domain.catalog import ProductKind
from zerocontact.marketing.domain.segments import Rule
from zerocontact.marketing.segmenting import recompute_all
from zerocontact.platform.deps import IdempotencyKey

router = back_office_router()


class ProductIn(Body):
    product_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: ProductKind
    name: str = Field(min_length=1, max_length=100)
    risk_level: int = Field(ge=1, le=5, description="R1..R5")
    annual_rate: str = Field(default="", pattern=r"^$|^[0-9]{1,2}(\.[0-9]{1,4})?%$")


class SegmentIn(Body):
    segment_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    rule: Rule


@router.put("/products/{product_id}")
async def put_product(
    product_id: Id, body: ProductIn, key: IdempotencyKey, request: Request
) -> Any:
    """Add or replace a catalog product (risk level R1..R5; loans state their annual rate)."""
    if body.product_id != product_id:
        raise PathMismatch("product_id in the body differs from the path", field="product_id")
    if body.kind is ProductKind.LOAN and not body.annual_rate:
        raise handlers.UnknownReference("a loan product needs its annual_rate", field="annual_rate")

    async def compute() -> Any:
        doc = {"_id": product_id, **body.model_dump(exclude={"product_id"})}
        await handlers.put_product(deps_of(request).repo, doc)
        return public(doc)

    return await once(request, "product", key, body.model_dump(mode="json"), compute)


@router.get("/products")
async def list_products(request: Request) -> Any:
    """The marketing catalog."""
    return [public(d) for d in await handlers.list_products(deps_of(request).repo)]


@router.put("/segments/{segment_id}")
async def put_segment(
    segment_id: Id, body: SegmentIn, key: IdempotencyKey, request: Request
) -> Any:
    """Define or change a segment's rule (membership follows profile changes)."""
    if body.segment_id != segment_id:
        raise PathMismatch("segment_id in the body differs from the path", field="segment_id")

    async def compute() -> Any:
        doc = {
            "_id": segment_id,
            "name": body.name,
            "rule": body.rule.model_dump(mode="json", by_alias=True),
        }
        deps = deps_of(request)
        await handlers.put_segment(deps.repo, deps.book, doc)
        return public(doc)

    return await once(request, "segment", key, body.model_dump(mode="json", by_alias=True), compute)


@router.post("/segments/recompute")
async def recompute(request: Request, key: IdempotencyKey) -> Any:
    """Re-evaluate every profile against every segment (batch; changes are events)."""
    deps = deps_of(request)

    async def compute() -> Any:
        deps.book.invalidate()
        book = await deps.book.current()
        done = await recompute_all(
            deps.repo,
            deps.relay,
            book.rules,
            now=deps.clock(),
            time_zone=deps.settings.default_time_zone,
            topic=deps.settings.topic,
        )
        return done.__dict__

    return await once(request, "recompute", key, {}, compute)
