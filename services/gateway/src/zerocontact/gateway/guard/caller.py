"""The authenticated partner's view of one call: :class:`Caller`, which servicer methods receive
instead of the raw servicer context."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from zerocontact.gateway.backends import Call
from zerocontact.gateway.errors import GatewayError, invalid
from zerocontact.gateway.store import Partner

# Identity's `X-Device-Id` (identity/api/deps.py): a value outside it was refused there, and one
# with a control character never left the gateway (aiohttp refuses it as header injection).
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass
class Caller:
    """The authenticated partner and what its call carries."""

    partner: Partner
    token: str | None
    peer_address: str
    deadline: float  # loop time
    idempotency_key: str | None
    metadata: dict[str, str]
    context: grpc.aio.ServicerContext[Any, Any]
    # A stream's acceptance: sends its initial metadata (the request id, plus what a
    # resumable stream adds, e.g. its start position's resume token) once; set by the envelope.
    accept: Callable[..., Awaitable[None]] | None = None

    def remaining(self) -> float:
        """Seconds left before the call's deadline."""
        return self.deadline - asyncio.get_running_loop().time()

    def call(self, *, with_token: bool = True, device_id: str | None = None) -> Call:
        """A service call carrying the deadline, token, peer address and idempotency key
        (and the device id, which INVALID_ARGUMENT refuses unless identity would take it)."""
        if device_id is not None and not DEVICE_ID.fullmatch(device_id):
            raise invalid("device_id", "1-64 characters of A-Z a-z 0-9 _ . : -")
        return Call(
            timeout_s=self.remaining(),
            token=self.token if with_token else None,
            idempotency_key=self.idempotency_key,
            forwarded_for=self.peer_address,
            device_id=device_id,
        )

    def require_token(self) -> str:
        """The party's access token, or UNAUTHENTICATED."""
        if not self.token:
            raise GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "PARTY_TOKEN_REQUIRED",
                "this call acts for a party: send its access token as `authorization: Bearer …`",
            )
        return self.token


def _peer_address(peer: str) -> str:
    # "ipv4:10.0.0.7:5123" / "ipv6:[::1]:5123"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return rest
