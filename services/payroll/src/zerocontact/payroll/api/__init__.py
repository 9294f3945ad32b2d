"""HTTP API of payroll (OpenAPI at /docs). Every mutating call takes an ``Idempotency-Key``.

One router per resource; ``router`` carries them all (what ``app.py`` mounts).
"""

from fastapi import APIRouter

from zerocontact.payroll.api import batches, employers, payouts, treasury
from zerocontact.payroll.api.deps import MalformedInput

router = APIRouter()
for _module in (employers, treasury, batches, payouts):
    router.include_router(_module.router)

__all__ = ["MalformedInput", "router"]
