"""Customers, enterprises and their KYC/KYB levels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from zerocontact.identity.api.deps import Ctx, idempotent, operator_only
from zerocontact.identity.api.schemas import (
    ChangePhoneRequest,
    CustomerView,
    EnterpriseView,
    OperatorTransitionRequest,
    RegisterCustomerRequest,
    RegisterEnterpriseRequest,
)
from zerocontact.identity.domain.errors import Forbidden
from zerocontact.identity.handlers import authentication, kyc, registration
from zerocontact.platform.deps import Caller, IdempotencyKey
from zerocontact.platform.errors import NotFound

router = APIRouter(tags=["parties"])
PartyId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.post("/v1/customers", status_code=201, response_model=CustomerView)
async def register_customer(
    body: RegisterCustomerRequest,
    key: IdempotencyKey,
    request: Request,
    ctx: Ctx,
) -> JSONResponse:
    """Register an individual customer (KYC BASIC once the data validates)."""

    async def run() -> CustomerView:
        customer = await registration.register_customer(
            registration.RegisterCustomer(
                body.name,
                body.resident_id,
                body.phone,
                body.date_of_birth,
                body.address,
                body.password,
            ),
            ctx=ctx,
        )
        return CustomerView.of(customer)

    return await idempotent(
        request, key=key, scope="POST /v1/customers", payload=body.model_dump(mode="json"),
        run=run, status_code=201,
    )  # fmt: skip


@router.get("/v1/customers/{customer_id}", response_model=CustomerView)
async def get_customer(customer_id: PartyId, caller: Caller, ctx: Ctx) -> CustomerView:
    """A customer's own profile (masked personal data)."""
    if caller.subject != customer_id:
        raise Forbidden("a customer can only read their own profile")
    doc = await ctx.parties.get_customer_doc(customer_id)
    if doc is None:
        raise NotFound(f"customer {customer_id} does not exist")
    record = ctx.parties.customer_record(doc, ctx.decrypt_birth_date(doc["birth_date_encrypted"]))
    return CustomerView.of(record.customer)


@router.put("/v1/customers/{customer_id}/phone", response_model=CustomerView)
async def change_phone(
    customer_id: PartyId, body: ChangePhoneRequest, key: IdempotencyKey, request: Request,
    caller: Caller, ctx: Ctx,
) -> JSONResponse:  # fmt: skip
    """Change the registered phone. Sensitive: needs AAL2 and a recent authentication."""

    async def run() -> CustomerView:
        customer = await authentication.change_phone(
            customer_id, phone=body.phone, principal=caller, ctx=ctx
        )
        return CustomerView.of(customer)

    return await idempotent(
        request,
        key=key,
        scope=f"PUT phone {caller.subject}",
        payload=[customer_id, body.phone],
        run=run,
    )


@router.post("/v1/customers/{customer_id}/kyc/verification", response_model=CustomerView)
async def verify_customer(
    customer_id: PartyId, key: IdempotencyKey, request: Request, caller: Caller, ctx: Ctx,
) -> JSONResponse:  # fmt: skip
    """KYC BASIC -> VERIFIED by the customer's own recent two-factor authentication."""

    async def run() -> CustomerView:
        return CustomerView.of(await kyc.verify_customer(customer_id, principal=caller, ctx=ctx))

    return await idempotent(
        request,
        key=key,
        scope=f"POST kyc verification {caller.subject}",
        payload=customer_id,
        run=run,
    )


@router.post("/v1/enterprises", status_code=201, response_model=EnterpriseView)
async def register_enterprise(
    body: RegisterEnterpriseRequest, key: IdempotencyKey, request: Request, caller: Caller,
    ctx: Ctx,
) -> JSONResponse:  # fmt: skip
    """Register an enterprise; the caller must be its legal representative."""

    async def run() -> EnterpriseView:
        enterprise = await registration.register_enterprise(
            registration.RegisterEnterprise(
                body.name, body.credit_code, body.legal_representative_id, body.business_category,
                body.registered_capital.money(),
            ),
            principal=caller, ctx=ctx,
        )  # fmt: skip
        return EnterpriseView.of(enterprise)

    return await idempotent(
        request, key=key, scope=f"POST /v1/enterprises {caller.subject}",
        payload=body.model_dump(mode="json"), run=run, status_code=201,
    )  # fmt: skip


@router.get("/v1/enterprises/{enterprise_id}", response_model=EnterpriseView)
async def get_enterprise(enterprise_id: PartyId, caller: Caller, ctx: Ctx) -> EnterpriseView:
    """An enterprise, for its legal representative."""
    enterprise = await ctx.parties.get_enterprise(enterprise_id)
    if enterprise is None or enterprise.representative_id != caller.subject:
        raise NotFound(f"enterprise {enterprise_id} does not exist")
    return EnterpriseView.of(enterprise)


@router.post(
    "/v1/parties/{party_id}/kyc/transitions",
    dependencies=[Depends(operator_only)],
    tags=["back office"],
)
async def operator_transition(
    party_id: PartyId, body: OperatorTransitionRequest, key: IdempotencyKey, request: Request,
    ctx: Ctx,
) -> JSONResponse:  # fmt: skip
    """A KYC reviewer moves a customer or enterprise one level (X-Operator-Key, X-Operator-Id)."""
    operator = request.headers.get("X-Operator-Id", "").strip()
    if not operator or len(operator) > 64:
        raise Forbidden("X-Operator-Id naming the reviewer is required")

    async def run() -> CustomerView | EnterpriseView:
        common = {
            "actor": f"operator:{operator}", "reason": body.reason, "evidence": body.evidence,
            "ctx": ctx,
        }  # fmt: skip
        if await ctx.parties.get_enterprise(party_id) is not None:
            return EnterpriseView.of(
                await kyc.change_enterprise_level(party_id, body.target_level, **common)  # type: ignore[arg-type]
            )
        return CustomerView.of(
            await kyc.change_customer_level(party_id, body.target_level, **common)  # type: ignore[arg-type]
        )

    return await idempotent(
        request, key=key, scope=f"POST kyc transition {operator}",
        payload=[party_id, body.model_dump(mode="json")], run=run,
    )  # fmt: skip
