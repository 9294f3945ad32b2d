"""Typed refusals of the assistant, by category (the edges translate them once)."""

from __future__ import annotations

from zerocontact.platform.errors import Conflict, Forbidden, Invalid, NotFound


class ConversationNotFound(NotFound):
    """No such conversation, or not the caller's (never says which)."""

    code = "conversation_not_found"


class ConversationClosed(Conflict):
    """The conversation has ended; start a new one."""

    code = "conversation_closed"


class HandoffNotFound(NotFound):
    """No such hand-off."""

    code = "handoff_not_found"


class HandoffAlreadyClaimed(Conflict):
    """Another operator claimed the hand-off first."""

    code = "handoff_already_claimed"


class HandoffNotClaimed(Conflict):
    """The hand-off must be claimed before it is replied to or closed."""

    code = "handoff_not_claimed"


class HandoffClosedAlready(Conflict):
    """The hand-off is closed."""

    code = "handoff_closed"


class NotYourHandoff(Forbidden):
    """Another operator holds the hand-off."""

    code = "not_your_handoff"


class UnsafeReply(Invalid):
    """An operator's reply crosses a red line (the findings name the rules)."""

    code = "unsafe_reply"


class IdempotencyKeyReused(Invalid):
    """The same Idempotency-Key came with a different request."""

    code = "idempotency_key_reused"
