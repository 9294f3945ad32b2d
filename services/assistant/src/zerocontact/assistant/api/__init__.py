"""HTTP API of the assistant (OpenAPI at /docs): the customer's conversations and the back
office's hand-off queue. Mutating calls take an ``Idempotency-Key``; refusals are RFC 9457
problems; bad input is a 422 naming each field, never echoing it."""

from fastapi import APIRouter

from zerocontact.assistant.api import conversations, handoffs

routers: tuple[APIRouter, ...] = (conversations.router, handoffs.router)

__all__ = ["routers"]
