"""The identity service's business metrics (docs/observability.md).

* ``zc_identity_face_verifications_total{outcome}``: a verification stored just now —
  ``verified`` (the face matched and the liveness video passed), ``not_live`` (matched, but no
  video or a video that failed), ``mismatch`` (the face did not match). A photo that cannot be
  used (no face, blurred, ...) is refused before anything is stored and is not counted.
* ``zc_trust_log_size``: leaves in the e-contract log as this replica last saw it.
* ``zc_trust_sequencer_leader``: 1 while this replica holds the sequencer's lease.

The two gauges are set by the sequencer at each tick of its loop (every replica ticks: the
holder steps, the others refresh their view), so they are current without any request.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "FACE_VERIFICATIONS",
    "TRUST_LOG_SIZE",
    "TRUST_SEQUENCER_LEADER",
    "face_verified",
    "sequencer_state",
]

FACE_VERIFICATIONS = Counter(
    "zc_identity_face_verifications_total", "Face verifications stored, by outcome", ["outcome"]
)
TRUST_LOG_SIZE = Gauge("zc_trust_log_size", "Leaves in the e-contract transparency log")
TRUST_SEQUENCER_LEADER = Gauge(
    "zc_trust_sequencer_leader", "1 while this replica holds the trust log sequencer's lease"
)


def face_verified(*, matched: bool, live: bool) -> None:
    """A face verification was stored just now."""
    outcome = "mismatch" if not matched else "verified" if live else "not_live"
    FACE_VERIFICATIONS.labels(outcome).inc()


def sequencer_state(*, size: int, leader: bool) -> None:
    """The sequencer's view after a tick."""
    TRUST_LOG_SIZE.set(size)
    TRUST_SEQUENCER_LEADER.set(1 if leader else 0)
