"""Read-only views the API serves: item counts, item lines with their state, payslips."""

from __future__ import annotations

from collections.abc import AsyncIterator

from zerocontact.payroll.domain.aggregates import Batch, ItemLine, PayslipLine
from zerocontact.payroll.handlers.context import Context


async def item_counts(ctx: Context, batch: Batch) -> dict[str, int]:
    """Items per state (PAID, FAILED from the outcomes; the rest PENDING)."""
    return await ctx.repo.item_counts(batch)


def item_lines(ctx: Context, batch_id: str, *, after_seq: int = 0) -> AsyncIterator[ItemLine]:
    """The batch's items after ``after_seq``, in order, each with its state."""
    return ctx.repo.item_lines(batch_id, after_seq=after_seq)


async def payslips(ctx: Context, customer_id: str) -> list[PayslipLine]:
    """The payee's last hundred payslips, newest first."""
    return await ctx.repo.payslips(customer_id, limit=100)
