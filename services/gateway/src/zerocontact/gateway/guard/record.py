"""What every call leaves behind: Prometheus metrics and the audit record."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

from zerocontact.gateway.guard.gateway import Gateway

# The contract names (docs/observability.md): grpc_method is the full method
# (/zerocontact.gateway.v1.LoanService/SubmitApplication), grpc_code the status name (OK, ...).
CALLS = Counter(
    "zc_grpc_server_handled_total",
    "Gateway calls handled, by method and gRPC status code",
    ["grpc_method", "grpc_code"],
)
LATENCY = Histogram(
    "zc_grpc_server_handling_seconds",
    "Gateway call latency (unary: whole call; streams: until the stream ended)",
    ["grpc_method"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 30, 300),
)

_METRICS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _audit(
    gateway: Gateway,
    method: str,
    partner_id: str,
    outcome: str,
    reason: str,
    started: float,
    started_at: datetime,
    peer: str,
    replayed: bool,
) -> None:
    elapsed = time.perf_counter() - started
    children = _METRICS.get((method, outcome))
    if children is None:  # label look-ups once per (method, outcome), not per call
        children = _METRICS[(method, outcome)] = (
            CALLS.labels(method, outcome),
            LATENCY.labels(method),
        )
    children[0].inc()
    children[1].observe(elapsed)
    gateway.audit.record(
        partner_id=partner_id,
        method=method,
        outcome=outcome,
        reason=reason,
        latency_us=int(elapsed * 1e6),
        replayed=replayed,
        started_at=started_at,
        peer=peer,
    )
