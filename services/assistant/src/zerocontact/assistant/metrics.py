"""The assistant's business metrics (docs/observability.md), counted after the write that
stored the fact succeeded (a retried request that finds its turn stored counts nothing)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

__all__ = [
    "ACTIONS",
    "ANSWERS",
    "ANSWER_SECONDS",
    "BLOCKED",
    "HANDOFFS",
    "OPERATOR_REFUSED",
    "TURN_PHASE_SECONDS",
    "phase",
]

ANSWERS = Counter(
    "zc_assistant_answers_total", "Customer messages answered by the assistant", ["intent"]
)
BLOCKED = Counter(
    "zc_assistant_blocked_answers_total",
    "Answers the red-line check refused (a safe fallback was shown instead)",
    ["source"],
)
ACTIONS = Counter("zc_assistant_actions_total", "Actions done for customers", ["kind", "outcome"])
HANDOFFS = Counter("zc_assistant_handoffs_total", "Conversations handed to a person", ["reason"])
OPERATOR_REFUSED = Counter(
    "zc_assistant_operator_replies_refused_total",
    "Operator replies refused by the red-line check (nothing was sent)",
)
ANSWER_SECONDS = Histogram(
    "zc_assistant_turn_seconds",
    "From a customer message's arrival to its stored answer (actions included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
TURN_PHASE_SECONDS = Histogram(
    "zc_assistant_turn_phase_seconds",
    "Where a customer message's time goes: read the conversation, understand, dialogue "
    "(reply, actions, hand-off), seal and write the turn",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Observe the wall time of the block as ``name`` in :data:`TURN_PHASE_SECONDS`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        TURN_PHASE_SECONDS.labels(name).observe(time.perf_counter() - started)
