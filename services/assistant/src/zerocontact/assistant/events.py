"""Builders of the protobuf CloudEvents the assistant emits on ``assistant.events.v1``.

Every event is keyed by the party the conversation is with. None carries what anyone wrote,
an amount, or a phone, card or ID number (docs/assistant.md, "Events").
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.assistant.domain.dialogue import HandoffReason
from zerocontact.assistant.v1 import events_pb2 as pb
from zerocontact.platform.outbox import OutboxEvent, protobuf_event

SOURCE = "/zerocontact/assistant"

CHANNELS = {"app": pb.CHANNEL_APP, "partner": pb.CHANNEL_PARTNER}
LANGUAGES = {"zh": pb.LANGUAGE_ZH, "en": pb.LANGUAGE_EN}
ACTION_KINDS = {
    "loan.application_status": pb.ACTION_KIND_LOAN_APPLICATION_STATUS,
    "loan.next_installment": pb.ACTION_KIND_LOAN_NEXT_INSTALLMENT,
    "loan.early_repayment_quote": pb.ACTION_KIND_LOAN_EARLY_REPAYMENT_QUOTE,
    "loan.repay": pb.ACTION_KIND_LOAN_REPAY,
    "payroll.batch_status": pb.ACTION_KIND_PAYROLL_BATCH_STATUS,
    "identity.lock_device": pb.ACTION_KIND_IDENTITY_LOCK_DEVICE,
    "identity.revoke_sessions": pb.ACTION_KIND_IDENTITY_REVOKE_SESSIONS,
    "loan.list": pb.ACTION_KIND_LOAN_LIST,
}
OUTCOMES = {
    "succeeded": pb.ACTION_OUTCOME_SUCCEEDED,
    "refused": pb.ACTION_OUTCOME_REFUSED,
    "step_up_required": pb.ACTION_OUTCOME_STEP_UP_REQUIRED,
    "declined": pb.ACTION_OUTCOME_DECLINED,
    "unavailable": pb.ACTION_OUTCOME_UNAVAILABLE,
}
REASONS = {
    HandoffReason.CUSTOMER_REQUEST: pb.HANDOFF_REASON_CUSTOMER_REQUEST,
    HandoffReason.LOW_CONFIDENCE: pb.HANDOFF_REASON_LOW_CONFIDENCE,
    HandoffReason.FAILED_TURNS: pb.HANDOFF_REASON_FAILED_TURNS,
    HandoffReason.COMPLAINT: pb.HANDOFF_REASON_COMPLAINT,
}
RESOLUTIONS = {
    "resolved": pb.HANDOFF_RESOLUTION_RESOLVED,
    "unresolved": pb.HANDOFF_RESOLUTION_UNRESOLVED,
}


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _wrap(w: pb.AssistantEvent, *, topic: str, party_id: str, at: datetime) -> OutboxEvent:
    return protobuf_event(w, topic=topic, key=party_id, source=SOURCE, time=at)


def conversation_started(
    topic: str, conversation_id: str, party_id: str, channel: str, partner_id: str, at: datetime
) -> OutboxEvent:
    """ConversationStarted."""
    w = pb.AssistantEvent()
    e = w.conversation_started
    e.conversation_id, e.party_id, e.partner_id = conversation_id, party_id, partner_id
    e.channel = CHANNELS[channel]
    e.started_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def question_answered(
    topic: str,
    conversation_id: str,
    party_id: str,
    *,
    turn: int,
    intent: str,
    article_id: str | None,
    confidence: float,
    language: str,
    blocked: bool,
    contained: bool,
    at: datetime,
) -> OutboxEvent:
    """QuestionAnswered: how one customer message was answered."""
    w = pb.AssistantEvent()
    e = w.question_answered
    e.conversation_id, e.party_id, e.turn = conversation_id, party_id, turn
    e.intent, e.article_id, e.confidence = intent, article_id or "", confidence
    e.language = LANGUAGES.get(language, pb.LANGUAGE_UNSPECIFIED)
    e.blocked, e.contained = blocked, contained
    e.answered_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def action_performed(
    topic: str,
    conversation_id: str,
    party_id: str,
    *,
    kind: str,
    outcome: str,
    resource_id: str,
    refusal: str,
    at: datetime,
) -> OutboxEvent:
    """ActionPerformed: what was done for the customer, and how it ended (no amounts)."""
    w = pb.AssistantEvent()
    e = w.action_performed
    e.conversation_id, e.party_id = conversation_id, party_id
    e.kind, e.outcome = ACTION_KINDS[kind], OUTCOMES[outcome]
    e.resource_id, e.refusal = resource_id, refusal
    e.performed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def handoff_requested(
    topic: str,
    handoff_id: str,
    conversation_id: str,
    party_id: str,
    *,
    reason: HandoffReason,
    intent: str,
    confidence: float,
    turns: int,
    at: datetime,
) -> OutboxEvent:
    """HandoffRequested."""
    w = pb.AssistantEvent()
    e = w.handoff_requested
    e.handoff_id, e.conversation_id, e.party_id = handoff_id, conversation_id, party_id
    e.reason, e.intent, e.confidence, e.turns = REASONS[reason], intent, confidence, turns
    e.requested_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def complaint_raised(
    topic: str, complaint_id: str, conversation_id: str, party_id: str, at: datetime
) -> OutboxEvent:
    """ComplaintRaised (marketing suppresses its contacts to the party until resolved)."""
    w = pb.AssistantEvent()
    e = w.complaint_raised
    e.complaint_id, e.conversation_id, e.party_id = complaint_id, conversation_id, party_id
    e.raised_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def handoff_claimed(
    topic: str, handoff_id: str, conversation_id: str, party_id: str, operator_id: str, at: datetime
) -> OutboxEvent:
    """HandoffClaimed."""
    w = pb.AssistantEvent()
    e = w.handoff_claimed
    e.handoff_id, e.conversation_id, e.party_id = handoff_id, conversation_id, party_id
    e.operator_id = operator_id
    e.claimed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def handoff_replied(
    topic: str, handoff_id: str, conversation_id: str, party_id: str, operator_id: str, at: datetime
) -> OutboxEvent:
    """HandoffReplied (the text stays in the conversation)."""
    w = pb.AssistantEvent()
    e = w.handoff_replied
    e.handoff_id, e.conversation_id, e.party_id = handoff_id, conversation_id, party_id
    e.operator_id = operator_id
    e.replied_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def handoff_closed(
    topic: str,
    handoff_id: str,
    conversation_id: str,
    party_id: str,
    operator_id: str,
    resolution: str,
    at: datetime,
) -> OutboxEvent:
    """HandoffClosed."""
    w = pb.AssistantEvent()
    e = w.handoff_closed
    e.handoff_id, e.conversation_id, e.party_id = handoff_id, conversation_id, party_id
    e.operator_id, e.resolution = operator_id, RESOLUTIONS[resolution]
    e.closed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def complaint_resolved(
    topic: str,
    complaint_id: str,
    conversation_id: str,
    party_id: str,
    operator_id: str,
    at: datetime,
) -> OutboxEvent:
    """ComplaintResolved."""
    w = pb.AssistantEvent()
    e = w.complaint_resolved
    e.complaint_id, e.conversation_id, e.party_id = complaint_id, conversation_id, party_id
    e.operator_id = operator_id
    e.resolved_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)


def conversation_closed(
    topic: str,
    conversation_id: str,
    party_id: str,
    *,
    contained: bool,
    turns: int,
    handoffs: int,
    at: datetime,
) -> OutboxEvent:
    """ConversationClosed (``contained``: no hand-off to a person)."""
    w = pb.AssistantEvent()
    e = w.conversation_closed
    e.conversation_id, e.party_id = conversation_id, party_id
    e.contained, e.turns, e.handoffs = contained, turns, handoffs
    e.closed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, party_id=party_id, at=at)
