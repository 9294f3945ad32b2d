"""Trust events as protobuf CloudEvents on ``identity.events.v1`` (the IdentityEvent oneof)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.identity.handlers.events import SOURCE
from zerocontact.identity.trust.treehead import TreeHead
from zerocontact.identity.v1 import events_pb2
from zerocontact.platform.outbox import OutboxEvent, protobuf_event

TREE_HEAD_KEY = "trust-log"
"""The key of every TreeHeadSigned: a head is about the log, not a party, and one key keeps
the heads in order on one partition (the catalog's ``identity.events.v1`` row says so)."""


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _wrap(wrapper: events_pb2.IdentityEvent, *, topic: str, key: str, at: datetime) -> OutboxEvent:
    """The event in the active trace context (a request's, or a deferred span's)."""
    return protobuf_event(wrapper, topic=topic, key=key, source=SOURCE, time=at)


def face_enrolled(*, customer_id: str, template_id: str, image_kept: bool, at: datetime,
                  topic: str) -> OutboxEvent:  # fmt: skip
    """FaceEnrolled (no embedding, no image)."""
    w = events_pb2.IdentityEvent()
    m = w.face_enrolled
    m.customer_id, m.template_id, m.image_kept = customer_id, template_id, image_kept
    m.enrolled_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=customer_id, at=at)


def face_verified(*, customer_id: str, verification_id: str, matched: bool, distance: float,
                  liveness_checked: bool, liveness_passed: bool, challenge: str, at: datetime,
                  topic: str) -> OutboxEvent:  # fmt: skip
    """FaceVerified with the liveness result."""
    w = events_pb2.IdentityEvent()
    m = w.face_verified
    m.customer_id, m.verification_id, m.matched = customer_id, verification_id, matched
    m.distance, m.liveness_checked, m.liveness_passed = distance, liveness_checked, liveness_passed
    m.liveness_challenge = challenge
    m.verified_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=customer_id, at=at)


def dual_recording_stored(*, recording_id: str, customer_id: str, product_code: str,
                          content_sha256: str, duration_ms: int, steps: int, face_matched: bool,
                          retain_until: datetime, at: datetime, topic: str) -> OutboxEvent:  # fmt: skip
    """DualRecordingStored."""
    w = events_pb2.IdentityEvent()
    m = w.dual_recording_stored
    m.recording_id, m.customer_id, m.product_code = recording_id, customer_id, product_code
    m.content_sha256, m.duration_ms, m.steps_acknowledged = content_sha256, duration_ms, steps
    m.face_matched = face_matched
    m.retain_until.CopyFrom(_ts(retain_until))
    m.stored_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=customer_id, at=at)


def dual_recording_purged(*, recording_id: str, customer_id: str, product_code: str,
                           content_sha256: str, retain_until: datetime, at: datetime,
                           topic: str) -> OutboxEvent:  # fmt: skip
    """DualRecordingPurged (the video is gone, the record stays)."""
    w = events_pb2.IdentityEvent()
    m = w.dual_recording_purged
    m.recording_id, m.customer_id, m.product_code = recording_id, customer_id, product_code
    m.content_sha256 = content_sha256
    m.retain_until.CopyFrom(_ts(retain_until))
    m.purged_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=customer_id, at=at)


def contract_signed(*, contract_id: str, customer_id: str, template_id: str, contract_sha256: str,
                    leaf_index: int, tree_size: int, at: datetime, topic: str) -> OutboxEvent:  # fmt: skip
    """ContractSigned."""
    w = events_pb2.IdentityEvent()
    m = w.contract_signed
    m.contract_id, m.customer_id, m.template_id = contract_id, customer_id, template_id
    m.contract_sha256, m.leaf_index, m.tree_size = contract_sha256, leaf_index, tree_size
    m.signed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=customer_id, at=at)


def tree_head_signed(head: TreeHead, *, topic: str) -> OutboxEvent:
    """TreeHeadSigned, keyed :data:`TREE_HEAD_KEY` so heads stay in order on one partition."""
    at = datetime.fromtimestamp(head.timestamp_ms / 1000, UTC)
    w = events_pb2.IdentityEvent()
    m = w.tree_head_signed
    m.tree_size, m.root_hash, m.signature = head.tree_size, head.root_hash, head.signature
    m.signed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=TREE_HEAD_KEY, at=at)
