"""Real-time trigger rules of triggered campaigns (validated models, no eval).

- ``salary_paid``: a salary reached the party and the party's salary inflows of the current
  local month reach ``min_month_salary_minor``. Marketing sees no account balances; the
  month's salary inflows (from ``SalaryPaid``) stand in for "balance above X".
- ``loan_not_accepted``: a loan was approved and not accepted within ``after_minutes``
  (a reminder; the service keeps a due reminder per application and drops it on acceptance).
- ``studio_card_clicked``: a studio viewer clicked a product card (optionally one product).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SalaryPaidTrigger(_Trigger):
    """Salary paid and this month's salary inflows at least ``min_month_salary_minor``."""

    kind: Literal["salary_paid"]
    min_month_salary_minor: int = Field(ge=0)


class LoanNotAcceptedTrigger(_Trigger):
    """Loan approved but not accepted within ``after_minutes``."""

    kind: Literal["loan_not_accepted"]
    after_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


class StudioCardClickedTrigger(_Trigger):
    """A viewer clicked a product card in a live studio session."""

    kind: Literal["studio_card_clicked"]
    product_id: str | None = None


Trigger = Annotated[
    SalaryPaidTrigger | LoanNotAcceptedTrigger | StudioCardClickedTrigger,
    Field(discriminator="kind"),
]
TRIGGER = TypeAdapter(Trigger)


def salary_fires(trigger: SalaryPaidTrigger, salary_month_minor: int) -> bool:
    """Whether a salary-paid trigger fires for a month's inflows so far."""
    return salary_month_minor >= trigger.min_month_salary_minor


def card_click_fires(trigger: StudioCardClickedTrigger, product_id: str) -> bool:
    """Whether a card-click trigger fires for a click on ``product_id``."""
    return trigger.product_id is None or trigger.product_id == product_id
