"""What the handlers share: their dependencies, the clock, message documents, the checker."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zerocontact.assistant import metrics
from zerocontact.assistant.backends import Backends
from zerocontact.assistant.domain.dialogue import DialoguePolicy
from zerocontact.assistant.domain.replies import render
from zerocontact.assistant.repository import AssistantRepository, message_key
from zerocontact.assistant.settings import AssistantSettings
from zerocontact.assistant.understanding import Understander
from zerocontact.platform.compliance import check_text
from zerocontact.platform.logging import mask_personal_data
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.pii import FieldCipher
from zerocontact.platform.projection import ProjectionWaits

log = logging.getLogger(__name__)

__all__ = [
    "AssistantDeps",
    "Said",
    "derived_id",
    "derived_key",
    "message_doc",
    "safe",
    "utc_now",
]

_NAMESPACE = uuid.UUID("6f1d3a52-2d0c-4c55-9a43-6b3f0a1e2c71")


def utc_now() -> datetime:
    """The real clock, to the millisecond: what BSON stores, so a document kept in memory
    after its write shows the same times as one read back."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class AssistantDeps:
    """What the handlers need, built once in the app's lifespan."""

    settings: AssistantSettings
    repo: AssistantRepository
    relay: OutboxRelay
    understander: Understander
    backends: Backends
    cipher: FieldCipher
    waits: ProjectionWaits
    policy: DialoguePolicy

    @property
    def topic(self) -> str:
        """The topic every event goes to."""
        return self.settings.events_topic


@dataclass(frozen=True)
class Said:
    """One reply of the assistant before it is stored."""

    kind: str
    text: str
    blocked: bool = False
    intent: str | None = None
    article_id: str | None = None
    confidence: float | None = None


def derived_id(*parts: str) -> str:
    """A UUID fixed by ``parts``: a retried request finds what its first attempt created."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def derived_key(*parts: str) -> str:
    """An Idempotency-Key for an owning service, fixed by ``parts`` (a retried turn repeats
    the same call, which the owning service answers once)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def safe(kind: str, template: str, language: str, **values: object) -> Said:
    """A fixed reply of ``kind``, red-line checked like every answer: a finding replaces it
    with a safe text and counts it (never expected of a template; the check is the guarantee)."""
    text = render(template, language, **values)
    findings = check_text(text)
    if findings:
        metrics.BLOCKED.labels("template").inc()
        log.warning(
            "a reply template crossed a red line",
            extra={"template": template, "rules": [f.rule for f in findings]},
        )
        return Said(kind, render("fallback", language), blocked=True)
    return Said(kind, text)


def message_doc(
    deps: AssistantDeps,
    *,
    seq: int,
    sender: str,
    kind: str,
    text: str,
    at: datetime,
    conversation_id: str,
    **extra: Any,
) -> dict[str, Any]:
    """A stored message: masked for every reader; a customer's own words also sealed."""
    doc: dict[str, Any] = {
        "seq": seq,
        "sender": sender,
        "kind": kind,
        "text": mask_personal_data(text),
        "at": at,
        **extra,
    }
    if sender == "customer":
        doc["text_sealed"] = deps.cipher.encrypt(
            text, context=f"assistant:{conversation_id}:{message_key(seq)}"
        )
    return doc
