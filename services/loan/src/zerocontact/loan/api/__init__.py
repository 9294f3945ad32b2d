"""HTTP routes of the loan service (OpenAPI at /docs), one module per resource. Every mutating
call takes an ``Idempotency-Key``; refusals are RFC 9457 problems; bad input is a 422 naming
each field."""

from zerocontact.loan.api.admin import router as admin_router
from zerocontact.loan.api.applications import router as applications_router
from zerocontact.loan.api.loans import router as loans_router
from zerocontact.loan.api.products import router as products_router
from zerocontact.loan.api.reports import router as reports_router

__all__ = [
    "admin_router",
    "applications_router",
    "loans_router",
    "products_router",
    "reports_router",
]
