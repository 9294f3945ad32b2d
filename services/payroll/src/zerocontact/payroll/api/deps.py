"""What payroll's routes share: the handler context, path and amount types, input errors.

Callers authenticate with identity's access tokens (``Caller``); approving a batch needs a
step-up (``SteppedUp``: AAL2, authenticated within ``step_up_max_age_s``). Both, and the
``Idempotency-Key`` every mutating call takes, come from ``zerocontact.platform.deps``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import Field

from zerocontact.payroll.handlers import Context
from zerocontact.platform.deps import Caller, IdempotencyKey, SteppedUp
from zerocontact.platform.errors import Invalid

__all__ = [
    "Amount",
    "Caller",
    "Ctx",
    "IdempotencyKey",
    "MalformedInput",
    "PartyId",
    "SteppedUp",
]

PartyId = Annotated[str, Path(pattern=r"^[0-9A-Za-z-]{8,64}$")]
Amount = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]


class MalformedInput(Invalid):
    """The body cannot be read as the declared format."""

    code = "malformed_input"


def _context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(_context)]
"""The handlers' collaborators, wired by the app's lifespan."""
