"""What every ``/v1`` router of marketing shares: the back office's credential and operator,
path and header types, the idempotent-command helper and the public view of a document.

Every ``/v1`` call is made by the bank's back office for one of its staff: it presents the
shared ``X-Operator-Key`` (403 without it) and names the member of staff in ``X-Operator-Id``.
A campaign's author is the operator who created it and its approver the operator who
approved it (four eyes: never the same). Mutating calls take an ``Idempotency-Key``
(:mod:`zerocontact.marketing.idempotency`): a retry returns the first response, a duplicate
still running is a 409 ``request_in_progress``, the same key with another request a 422."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel, ConfigDict, SecretStr

from zerocontact.marketing.handlers.deps import MarketingDeps
from zerocontact.marketing.idempotency import run_once
from zerocontact.platform.auth import shared_credential
from zerocontact.platform.errors import Invalid

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
ChannelName = Literal["app_push", "sms", "in_app", "live_studio"]
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# A back-office user id: short and plain, as it is stored and published in review events.
OPERATOR_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class PathMismatch(Invalid):
    """The id in the body differs from the id in the path."""

    code = "path_mismatch"


class Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def _operator_key(request: Request) -> SecretStr:
    key: SecretStr = request.app.state.deps.settings.operator_key
    return key


operator_key = shared_credential("X-Operator-Key", _operator_key)


async def current_operator(
    operator_id: Annotated[
        str,
        Header(
            alias="X-Operator-Id",
            pattern=OPERATOR_ID,
            description="The back-office user making the call (recorded as a campaign's "
            "author, reviewer or approver, and as the approver in CampaignReviewed).",
        ),
    ],
) -> str:
    """The operator the back office acts for."""
    return operator_id


Operator = Annotated[str, Depends(current_operator)]


def back_office_router() -> APIRouter:
    """A ``/v1`` router whose every route needs the operator credential and id.

    The key is checked first (router dependencies run before the route's own parameters), so
    an unauthenticated call is a 403 whatever else is wrong with it.
    """
    return APIRouter(
        prefix="/v1",
        tags=["marketing"],
        dependencies=[Depends(operator_key), Depends(current_operator)],
    )


def deps_of(request: Request) -> MarketingDeps:
    """The instance's :class:`MarketingDeps`."""
    deps: MarketingDeps = request.app.state.deps
    return deps


async def once(
    request: Request,
    scope: str,
    key: str,
    body: Any,
    compute: Callable[[], Awaitable[Any]],
) -> Any:
    """Run ``compute`` once per (scope, key); a retry returns the stored response. The request
    is the body and the operator: the same key from another operator is another request."""
    deps = deps_of(request)
    return await run_once(
        deps.repo.idempotency,
        scope=scope,
        key=key,
        payload=request_fingerprint(request.headers["X-Operator-Id"], body),
        compute=compute,
        lease_s=deps.settings.idempotency_lease_s,
    )


def request_fingerprint(operator: str, body: Any) -> Any:
    """What an Idempotency-Key's request is compared by: who asked, and the body."""
    return {"operator": operator, "body": body}


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document as shown: no internal fields, ``_id`` as ``id``."""
    out = {k: v for k, v in doc.items() if not k.startswith("_") or k == "_id"}
    if "_id" in out:
        out["id"] = out.pop("_id")
    return out
