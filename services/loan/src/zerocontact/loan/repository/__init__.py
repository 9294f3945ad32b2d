"""Loan's MongoDB persistence: the repository (``store``) and the aggregates' stored forms
(``documents``); the names callers use are re-exported here."""

from zerocontact.loan.repository.documents import installment, installment_doc
from zerocontact.loan.repository.store import (
    APPLICATIONS,
    INDEXES,
    LOANS,
    PARTIES,
    REVENUE_REPORTS,
    ConcurrentUpdate,
    LoanRepository,
)

__all__ = [
    "APPLICATIONS",
    "INDEXES",
    "LOANS",
    "PARTIES",
    "REVENUE_REPORTS",
    "ConcurrentUpdate",
    "LoanRepository",
    "installment",
    "installment_doc",
]
