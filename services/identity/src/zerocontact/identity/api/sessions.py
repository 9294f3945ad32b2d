"""Login, second factors and step-up, token refresh and revocation, JWKS, SMS deliveries."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from zerocontact.identity.api.deps import Ctx, RequestClient, gateway_only, idempotent
from zerocontact.identity.api.schemas import (
    DeliveryView,
    DeviceView,
    LoginRequest,
    MySessionsView,
    RefreshRequest,
    RevokedView,
    RevokeSessionsRequest,
    SessionsRevokedView,
    SessionView,
    SmsChallengeView,
    StepUpRequest,
    TokenView,
)
from zerocontact.identity.handlers import authentication
from zerocontact.platform.deps import Caller, IdempotencyKey
from zerocontact.platform.errors import NotFound

router = APIRouter(tags=["sessions"])


@router.get("/.well-known/jwks.json", tags=["keys"])
async def jwks(ctx: Ctx) -> JSONResponse:
    """The public keys that verify identity's access tokens (current and still-trusted)."""
    return JSONResponse(ctx.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.post("/v1/sessions", response_model=TokenView)
async def login(
    body: LoginRequest, key: IdempotencyKey, request: Request, client: RequestClient, ctx: Ctx
) -> JSONResponse:
    """Log in with phone and password (AAL1), plus a TOTP code for AAL2 in one step."""

    async def run() -> TokenView:
        pair = await authentication.login(
            phone=body.phone,
            password=body.password,
            totp_code=body.totp_code,
            client=client,
            ctx=ctx,
        )
        return TokenView.of(pair)

    payload: dict[str, Any] = body.model_dump(mode="json") | {"device": client.device_id}
    return await idempotent(request, key=key, scope="POST /v1/sessions", payload=payload, run=run)


@router.post("/v1/sessions/sms-challenges", status_code=201, response_model=SmsChallengeView)
async def start_sms_challenge(
    key: IdempotencyKey, request: Request, caller: Caller, client: RequestClient, ctx: Ctx
) -> JSONResponse:
    """Send a one-time code by SMS to the registered phone, for step-up."""

    async def run() -> SmsChallengeView:
        started = await authentication.start_sms_challenge(principal=caller, client=client, ctx=ctx)
        return SmsChallengeView(challenge_id=started.challenge_id, expires_at=started.expires_at)

    return await idempotent(
        request, key=key, scope=f"POST sms challenge {caller.subject}", payload=caller.session_id,
        run=run, status_code=201,
    )  # fmt: skip


@router.post("/v1/sessions/step-up", response_model=TokenView)
async def step_up(
    body: StepUpRequest, key: IdempotencyKey, request: Request, caller: Caller,
    client: RequestClient, ctx: Ctx,
) -> JSONResponse:  # fmt: skip
    """Prove a second factor (TOTP, SMS code or recovery code): new tokens at AAL2."""

    async def run() -> TokenView:
        pair = await authentication.step_up(
            principal=caller, method=body.method, code=body.code, challenge_id=body.challenge_id,
            client=client, ctx=ctx,
        )  # fmt: skip
        return TokenView.of(pair)

    return await idempotent(
        request, key=key, scope=f"POST step-up {caller.subject}",
        payload=body.model_dump(mode="json") | {"sid": caller.session_id}, run=run,
    )  # fmt: skip


@router.post("/v1/tokens/refresh", response_model=TokenView)
async def refresh(
    body: RefreshRequest, key: IdempotencyKey, request: Request, ctx: Ctx
) -> JSONResponse:
    """Rotate a refresh token. Presenting a rotated-away token revokes the whole session."""

    async def run() -> TokenView:
        return TokenView.of(await authentication.refresh(refresh_token=body.refresh_token, ctx=ctx))

    return await idempotent(
        request, key=key, scope="POST /v1/tokens/refresh", payload=body.refresh_token, run=run
    )


@router.post("/v1/tokens/revoke", response_model=RevokedView)
async def revoke(
    body: RefreshRequest, key: IdempotencyKey, request: Request, ctx: Ctx
) -> JSONResponse:
    """Revoke a session by one of its refresh tokens (RFC 7009: unknown tokens are fine)."""

    async def run() -> RevokedView:
        await authentication.revoke(refresh_token=body.refresh_token, ctx=ctx)
        return RevokedView()

    return await idempotent(
        request, key=key, scope="POST /v1/tokens/revoke", payload=body.refresh_token, run=run
    )


@router.get("/v1/me/sessions", response_model=MySessionsView)
async def my_sessions(caller: Caller, ctx: Ctx) -> MySessionsView:
    """The caller's live sessions and the devices they are on (to choose a lost one)."""
    live = await authentication.live_sessions(customer_id=caller.subject, ctx=ctx)
    devices: dict[str, DeviceView] = {}
    for s in live:
        seen = devices.get(s.device_id) or DeviceView(
            device_id=s.device_id, sessions=0, current=False
        )
        seen.sessions += 1
        seen.current = seen.current or s.id == caller.session_id
        devices[s.device_id] = seen
    return MySessionsView(
        sessions=[
            SessionView(
                session_id=s.id,
                device_id=s.device_id,
                aal=str(s.aal),
                auth_time=s.auth_time,
                expires_at=s.expires_at,
                current=s.id == caller.session_id,
            )
            for s in live
        ],
        devices=list(devices.values()),
    )


@router.post("/v1/me/sessions/revocation", response_model=SessionsRevokedView)
async def revoke_my_sessions(
    body: RevokeSessionsRequest, key: IdempotencyKey, request: Request, caller: Caller, ctx: Ctx
) -> JSONResponse:
    """End the caller's other sessions, or those on one device (a lost phone); the current
    session stays. Any assurance level may do it: it only ever takes access away."""

    async def run() -> SessionsRevokedView:
        revoked = await authentication.revoke_other_sessions(
            customer_id=caller.subject, current_session_id=caller.session_id,
            device_id=body.device_id, ctx=ctx,
        )  # fmt: skip
        return SessionsRevokedView(revoked=revoked)

    return await idempotent(
        request, key=key, scope=f"POST sessions revocation {caller.subject}",
        payload=body.model_dump(mode="json"), run=run,
    )  # fmt: skip


DeliveryId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.post(
    "/v1/sms-deliveries/{delivery_id}/claim",
    response_model=DeliveryView,
    dependencies=[Depends(gateway_only)],
    tags=["sms gateway"],
)
async def claim_delivery(
    delivery_id: DeliveryId, key: IdempotencyKey, request: Request, ctx: Ctx
) -> JSONResponse:
    """For the SMS gateway (X-Gateway-Key): the sealed message of a notification, once."""

    async def run() -> DeliveryView:
        sealed = await ctx.challenges.claim_delivery(delivery_id, now=datetime.now(UTC))
        if sealed is None:
            raise NotFound(f"delivery {delivery_id} does not exist, expired or was claimed")
        return DeliveryView(
            delivery_id=delivery_id, sealed=base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        )

    return await idempotent(
        request, key=key, scope="POST sms delivery claim", payload=delivery_id, run=run
    )
