"""What every RPC goes through: partner authentication (mTLS certificate + API credential),
scopes, per-partner rate limits, deadlines, idempotency, error mapping and the audit record.

Servicer methods are decorated with :func:`unary` or :func:`streaming`; the method receives a
:class:`Caller` instead of the raw servicer context.

The checks and the shared state live in :mod:`.gateway` (:class:`Gateway`), the caller's view of
a call in :mod:`.caller`, the decorators in :mod:`.envelope` and the metrics and audit record in
:mod:`.record`.
"""

from zerocontact.gateway.guard.caller import Caller, _peer_address
from zerocontact.gateway.guard.envelope import (
    PACKAGE,
    REPLAYED_HEADER,
    Streaming,
    Unary,
    streaming,
    unary,
)
from zerocontact.gateway.guard.gateway import (
    CREDENTIAL_HEADER,
    IDEMPOTENCY_HEADER,
    KEY_PATTERN,
    Gateway,
)
from zerocontact.gateway.guard.record import CALLS, LATENCY

__all__ = [
    "CALLS",
    "CREDENTIAL_HEADER",
    "IDEMPOTENCY_HEADER",
    "KEY_PATTERN",
    "LATENCY",
    "PACKAGE",
    "REPLAYED_HEADER",
    "Caller",
    "Gateway",
    "Streaming",
    "Unary",
    "_peer_address",
    "streaming",
    "unary",
]
