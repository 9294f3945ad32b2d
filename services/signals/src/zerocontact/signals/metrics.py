"""The signals worker's metrics (docs/observability.md), served at ``/metrics`` on its web
port (6066) with the process's own (:mod:`.web`).

* ``zc_signals_events_total{agent,outcome}``: each record an agent took, by what became of
  it (``applied``, ``forwarded``, ``assessed``, ``scored``, ``counted``, ``duplicate``,
  ``ignored``, ``dead_lettered``, ...). ``agent`` is the Faust agent's name.
* ``zc_signals_processing_seconds{agent}``: from the input event's time (the record timestamp
  the pipeline's windows use, or the CloudEvent ``time``) to the signal the agent produced
  (a risk assessment, an engagement score, a funnel, a viewer count), observed when it was
  handed to the producer.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

__all__ = ["EVENTS", "PROCESSING", "count", "produced"]

EVENTS = Counter(
    "zc_signals_events_total", "Records the agents took, by outcome", ["agent", "outcome"]
)
PROCESSING = Histogram(
    "zc_signals_processing_seconds",
    "From the input event's time to the signal produced",
    ["agent"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

_counts: dict[tuple[str, str], Any] = {}
_durations: dict[str, Any] = {}


def count(agent: str, outcome: str) -> None:
    """One record taken by ``agent`` ended as ``outcome``."""
    child = _counts.get((agent, outcome))
    if child is None:
        child = _counts[(agent, outcome)] = EVENTS.labels(agent, outcome)
    child.inc()


def produced(agent: str, event_time: float) -> None:
    """``agent`` produced a signal from an event of ``event_time`` (Unix seconds) just now."""
    child = _durations.get(agent)
    if child is None:
        child = _durations[agent] = PROCESSING.labels(agent)
    child.observe(max(time.time() - event_time, 0.0))
