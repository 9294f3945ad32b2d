"""``/v1/products``: the catalogue on offer (no authentication: product terms are public)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from zerocontact.loan.api.deps import deps_of
from zerocontact.loan.api.schemas import ProductView
from zerocontact.platform.errors import NotFound

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get("")
async def list_products(request: Request) -> list[ProductView]:
    """Every product on offer."""
    return [ProductView.of(p) for p in deps_of(request).catalog.values()]


@router.get("/{product_id}")
async def get_product(
    product_id: Annotated[str, Path(max_length=64)], request: Request
) -> ProductView:
    """One product."""
    product = deps_of(request).catalog.get(product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}")
    return ProductView.of(product)
