"""The gateway's shared state and the checks a call goes through: partner authentication
(mTLS certificate + API credential), scopes, ownership, per-partner rate limits and watch-stream
slots, the call's deadline and party token, and idempotency."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from aiolimiter import AsyncLimiter
from google.protobuf.message import Message
from pymongo.errors import PyMongoError

from zerocontact.gateway.audit import AuditSink
from zerocontact.gateway.backends import Backends
from zerocontact.gateway.certs import PARTNER_URI_PREFIX
from zerocontact.gateway.errors import GatewayError, invalid, not_found
from zerocontact.gateway.guard.caller import Caller, _peer_address
from zerocontact.gateway.guard.ratelimit import SharedRateLimiter
from zerocontact.gateway.readmodel import ReadModel
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.gateway.store import IdempotencyStore, OwnershipStore, Partner, PartnerStore
from zerocontact.gateway.watch import EventHub
from zerocontact.platform.auth import InvalidToken, TokenVerifier

log = logging.getLogger(__name__)

CREDENTIAL_HEADER = "x-partner-credential"
IDEMPOTENCY_HEADER = "idempotency-key"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# After identity's key set did not answer, party tokens are left to the services this long.
TOKENS_BACKOFF_S = 10.0

Resp = TypeVar("Resp", bound=Message)


class Gateway:
    """The gateway's shared state for servicers."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        partners: PartnerStore,
        owners: OwnershipStore,
        idempotency: IdempotencyStore,
        backends: Backends,
        hub: EventHub,
        audit: AuditSink,
        shared_limiter: SharedRateLimiter | None = None,
        views: ReadModel | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.partners = partners
        self.owners = owners
        self.idempotency = idempotency
        self.backends = backends
        self.hub = hub
        self.audit = audit
        self.shared_limiter = shared_limiter
        self.views = views or ReadModel(max_age_s=0)
        self.tokens = tokens
        self._tokens_down_until = float("-inf")
        # per instance: when the shared limiter is off, and while MongoDB does not answer
        self._limiters: dict[str, AsyncLimiter] = {}
        self._watchers: dict[str, int] = defaultdict(int)

    # -- authentication and authorisation -------------------------------------------------

    async def authenticate(
        self, context: grpc.aio.ServicerContext[Any, Any], metadata: dict[str, str]
    ) -> Partner:
        """The partner named by the verified client certificate and proven by its credential."""
        auth = context.auth_context()
        partner_id = ""
        for san in auth.get("x509_subject_alternative_name", []):
            text = san.decode(errors="replace")
            if text.startswith(PARTNER_URI_PREFIX):
                partner_id = text[len(PARTNER_URI_PREFIX) :]
                break
        if not partner_id:
            raise GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "CLIENT_CERTIFICATE_REQUIRED",
                "a partner client certificate is required",
            )
        credential = metadata.get(CREDENTIAL_HEADER, "")
        partner = await self.partners.get(partner_id, time.monotonic())
        # One answer for unknown partner, inactive partner and wrong credential.
        if (
            partner is None
            or not partner.active
            or not credential
            or not self.partners.credential_matches(partner, credential)
        ):
            raise GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "INVALID_PARTNER_CREDENTIAL",
                f"the partner credential ({CREDENTIAL_HEADER}) is missing or not this "
                "certificate's partner's",
                metadata={"partner_id": partner_id},
            )
        return partner

    @staticmethod
    def authorize(partner: Partner, scope: str) -> None:
        """PERMISSION_DENIED unless the partner holds ``scope``."""
        if scope not in partner.scopes:
            raise GatewayError(
                grpc.StatusCode.PERMISSION_DENIED,
                "MISSING_SCOPE",
                f"the partner lacks the scope {scope}",
                metadata={"required_scope": scope},
            )

    async def rate_limit(self, partner: Partner) -> None:
        """RESOURCE_EXHAUSTED with RetryInfo when the partner's rate is used up: counted across
        every instance (:class:`SharedRateLimiter`), or per instance when it is off or MongoDB
        does not answer in time."""
        if self.shared_limiter is not None:
            try:
                retry_after = await self.shared_limiter.admit(
                    partner.partner_id, partner.rate_per_s
                )
            except (PyMongoError, TimeoutError):
                log.warning("shared rate limit unavailable: this instance's limit applies")
            else:
                if retry_after is None:
                    return
                raise GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "RATE_LIMITED",
                    f"rate limit of {partner.rate_per_s:g} calls/s reached",
                    retry_after_s=max(retry_after, 0.01),
                )
        limiter = self._limiters.get(partner.partner_id)
        if limiter is None or limiter.max_rate != partner.rate_per_s:
            # time_period 1 s: the burst equals the per-second rate
            limiter = AsyncLimiter(partner.rate_per_s, 1.0)
            self._limiters[partner.partner_id] = limiter
        if not limiter.has_capacity():
            raise GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "RATE_LIMITED",
                f"rate limit of {partner.rate_per_s:g} calls/s reached",
                retry_after_s=max(1.0 / partner.rate_per_s, 0.01),
            )
        await limiter.acquire()  # has_capacity() was true: this takes a slot without waiting

    async def require_owner(self, kind: str, resource_id: str, partner: Partner) -> None:
        """NOT_FOUND unless ``partner`` created the resource (the same answer as a missing one)."""
        owner = await self.owners.owner(kind, resource_id)
        if owner != partner.partner_id:
            raise not_found(kind)

    async def record_owner(self, kind: str, resource_id: str, partner: Partner) -> None:
        """Record that the partner owns a resource it just created."""
        try:
            await self.owners.record(kind, resource_id, partner.partner_id)
        except PermissionError as exc:
            raise not_found(kind) from exc

    async def party_of(self, token: str) -> str | None:
        """The party a token verified here acts as, or None when this instance cannot say
        (invalid, or identity's key set unreachable): the service behind then decides."""
        if self.tokens is None or time.monotonic() < self._tokens_down_until:
            return None
        try:
            return (await self.tokens.verify(token)).subject
        except InvalidToken:
            return None
        except Exception:
            log.warning("identity's key set unavailable: party tokens go to the services")
            self._tokens_down_until = time.monotonic() + TOKENS_BACKOFF_S
            return None

    # -- the call envelope ---------------------------------------------------------------

    async def open(
        self, context: grpc.aio.ServicerContext[Any, Any], scope: str, *, stream: bool
    ) -> Caller:
        """Authenticate, authorise, rate-limit and fix the deadline of a call."""
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        partner = await self.authenticate(context, metadata)
        try:
            self.authorize(partner, scope)
            await self.rate_limit(partner)
        except GatewayError as exc:
            exc.metadata.setdefault("partner_id", partner.partner_id)  # for the audit record
            raise
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining()
        ceiling = self.settings.max_watch_s if stream else self.settings.max_deadline_s
        budget = min(remaining if remaining is not None else (
            self.settings.max_watch_s if stream else self.settings.default_deadline_s
        ), ceiling)  # fmt: skip
        token = metadata.get("authorization", "")
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        elif token:
            raise invalid("authorization", "must be `Bearer <access token>`")
        key = metadata.get(IDEMPOTENCY_HEADER)
        return Caller(
            partner, token or None, _peer_address(context.peer()), loop.time() + budget, key,
            metadata, context,
        )  # fmt: skip

    async def idempotent(
        self,
        caller: Caller,
        method: str,
        request: Message,
        response_type: type[Resp],
        run: Callable[[], Awaitable[Resp]],
    ) -> tuple[Resp, bool]:
        """Run a mutating call once per (partner, method, key); replay or refuse otherwise."""
        key = caller.idempotency_key
        if not key or not KEY_PATTERN.match(key):
            raise invalid(IDEMPOTENCY_HEADER, "required: 8-64 characters of A-Z a-z 0-9 _ -")
        record_id = f"{caller.partner.partner_id}:{method}:{key}"
        # Keyed (HMAC under the pepper): a request may hold a password, and a plain hash of a
        # stolen record could be tested against guesses offline.
        digest = hmac.new(
            self.partners.pepper,
            method.encode() + b"\0" + request.SerializeToString(deterministic=True),
            hashlib.sha256,
        ).digest()
        claimed = await self.idempotency.claim(record_id, digest)
        if claimed.state == "replay":
            return response_type.FromString(claimed.response), True
        if claimed.state == "mismatch":
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "IDEMPOTENCY_KEY_REUSED",
                "this idempotency key was used with a different request",
                [(IDEMPOTENCY_HEADER, "already used with a different request")],
            )
        if claimed.state == "in_flight":
            raise GatewayError(
                grpc.StatusCode.ABORTED,
                "REQUEST_IN_PROGRESS",
                "a call with this idempotency key is still running; retry",
                retry_after_s=0.5,
            )
        # The services get a key derived from ours: a retry reaching them is theirs to replay.
        caller.idempotency_key = "gw" + hashlib.sha256(record_id.encode()).hexdigest()[:40]
        try:
            response = await run()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.idempotency.release(record_id))
            raise
        finally:
            # read-your-writes: nothing the read model held for the partner is served again
            self.views.mutated(caller.partner.partner_id)
        await self.idempotency.complete(record_id, response.SerializeToString(deterministic=True))
        return response, False

    def watcher_slot(self, partner: Partner) -> contextlib.AbstractContextManager[None]:
        """Bound the partner's concurrent watch streams."""
        gateway = self

        @contextlib.contextmanager
        def slot() -> Any:
            if gateway._watchers[partner.partner_id] >= gateway.settings.max_watchers_per_partner:
                raise GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "TOO_MANY_WATCHES",
                    "too many open watch streams for this partner",
                    retry_after_s=5.0,
                )
            gateway._watchers[partner.partner_id] += 1
            try:
                yield
            finally:
                gateway._watchers[partner.partner_id] -= 1

        return slot()
