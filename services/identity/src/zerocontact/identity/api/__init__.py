"""HTTP API of identity (FastAPI routers, OpenAPI documented)."""

from zerocontact.identity.api.factors import router as factors_router
from zerocontact.identity.api.parties import router as parties_router
from zerocontact.identity.api.sessions import router as sessions_router

__all__ = ["factors_router", "parties_router", "sessions_router"]
