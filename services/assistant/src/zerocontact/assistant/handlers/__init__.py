"""The assistant's use cases: conversations and their turns, actions, the hand-off queue."""

from zerocontact.assistant.handlers import conversations, handoffs
from zerocontact.assistant.handlers.context import AssistantDeps, utc_now

__all__ = ["AssistantDeps", "conversations", "handoffs", "utc_now"]
