"""Consumers: the profile projection (identity, loan, payroll, marketing, engagement and
assistant events),
segment membership after each profile change, and the real-time triggers — one module per
source of events, :mod:`.projector` routing them.

Every profile change goes through ``apply_once`` (idempotent by ``ce_id``); triggers run
only when the event was applied for the first time, so a redelivered SalaryPaid makes no
second offer.
"""

from __future__ import annotations

from zerocontact.marketing.consumers.loans import fire_due_reminders
from zerocontact.marketing.consumers.payroll import SALARY_CURRENCY, UNLINKED_SALARIES
from zerocontact.marketing.consumers.projector import Projector
from zerocontact.marketing.repository import payee_link_id

__all__ = [
    "SALARY_CURRENCY",
    "UNLINKED_SALARIES",
    "Projector",
    "fire_due_reminders",
    "payee_link_id",
]
