"""Identity's request-scoped dependencies: the handler context, the client, credentials and
idempotent replay. The idempotency key, the bearer and the caller come from
:mod:`zerocontact.platform.deps` (the lifespan puts the verifier on ``app.state``)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr

from zerocontact.identity.domain.errors import (
    Forbidden,
    IdempotencyConflict,
    RequestInProgress,
)
from zerocontact.identity.handlers.authentication import Client
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.repository import IdempotencyStore
from zerocontact.platform.auth import shared_credential

DeviceId = Annotated[
    str,
    Header(
        alias="X-Device-Id",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="The client's stable device identifier (a risk signal).",
    ),
]


def context(request: Request) -> IdentityContext:
    """The handler context built in the lifespan."""
    ctx: IdentityContext = request.app.state.ctx
    return ctx


Ctx = Annotated[IdentityContext, Depends(context)]


def _trusted(address: str, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted_proxies)


def source_address(request: Request, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """The peer address; behind a trusted proxy, the last address it saw before itself.

    A forwarded entry that is not an IP address ends the walk: it is what the untrusted client
    wrote, so the nearest trusted hop's peer is used instead of it.
    """
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, trusted_proxies):
        return peer
    forwarded = [
        a.strip() for a in request.headers.get("x-forwarded-for", "").split(",") if a.strip()
    ]
    for address in reversed(forwarded):
        if _trusted(address, trusted_proxies):
            peer = address
            continue
        try:
            ip_address(address)
        except ValueError:
            return peer
        return address
    return peer


def client(request: Request, device_id: DeviceId, ctx: Ctx) -> Client:
    """Source address and device id of the request."""
    return Client(
        source_address=source_address(request, ctx.settings.trusted_proxies),
        device_id=device_id,
    )


RequestClient = Annotated[Client, Depends(client)]


def _credential_check(header: str, setting: str) -> Callable[..., Awaitable[None]]:
    def secret(request: Request) -> SecretStr:
        ctx: IdentityContext = request.app.state.ctx
        value: SecretStr = getattr(ctx.settings, setting)
        return value

    return shared_credential(
        header, secret, refusal=lambda: Forbidden(f"a valid {header} is required")
    )


operator_only = _credential_check("X-Operator-Key", "operator_key")
gateway_only = _credential_check("X-Gateway-Key", "sms_gateway_key")


async def idempotent(
    request: Request,
    *,
    key: str,
    scope: str,
    payload: Any,
    run: Callable[[], Awaitable[BaseModel]],
    status_code: int = 200,
) -> JSONResponse:
    """Run ``run`` once per (scope, key); replay its response to retries of the same request.

    Responses are stored encrypted (they may hold tokens or a TOTP secret); the request is
    compared by a keyed hash, never stored.
    """
    ctx: IdentityContext = request.app.state.ctx
    store: IdempotencyStore = request.app.state.idempotency
    fingerprint = ctx.cipher.blind_index(json.dumps([scope, payload], sort_keys=True, default=str))
    record_id = f"{scope}|{key}"
    stored = await store.claim(record_id, fingerprint=fingerprint, now=datetime.now(UTC))
    if stored is not None:
        if not hmac.compare_digest(stored.fingerprint, fingerprint):
            raise IdempotencyConflict("this Idempotency-Key was used for a different request")
        if stored.status_code is None or stored.body_encrypted is None:
            raise RequestInProgress(
                "a request with this Idempotency-Key is in progress", retry=True
            )
        body = json.loads(ctx.cipher.decrypt(stored.body_encrypted, context="idempotency.response"))
        return JSONResponse(
            body, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
        )
    try:
        result = await run()
    except BaseException:
        await store.release(record_id)
        raise
    body = result.model_dump(mode="json")
    await store.complete(
        record_id,
        status_code=status_code,
        body_encrypted=ctx.cipher.encrypt(json.dumps(body), context="idempotency.response"),
    )
    return JSONResponse(body, status_code=status_code)
