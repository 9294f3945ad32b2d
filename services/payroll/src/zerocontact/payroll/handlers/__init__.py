"""Payroll's commands: onboarding, agents, top-up, batches, approval, gig payouts, sweep.

Each handler takes keyword-only collaborators (the :class:`Context` wired in ``app.py``),
checks who may act, moves money only through the ledger with deterministic posting ids, and
stores its events (built in ``payroll.events``) with the aggregate's state change in one write
through the repository.
"""

from zerocontact.payroll.domain.aggregates import VERIFIED_LEVELS
from zerocontact.payroll.domain.errors import (
    BatchRefused,
    FundsShort,
    InvalidState,
    KeyReused,
    MakerCheckerRequired,
    NotVerified,
    TopUpConflict,
)
from zerocontact.payroll.handlers.batches import (
    SubmitBatch,
    approve_batch,
    batch,
    refusal_body,
    submit_batch,
)
from zerocontact.payroll.handlers.context import Context, claim, fingerprint
from zerocontact.payroll.handlers.employers import (
    acting_employer,
    authorise_agent,
    employer,
    may_act,
    onboard_employer,
)
from zerocontact.payroll.handlers.payouts import GigPayout, drive_gig, pay_gig
from zerocontact.payroll.handlers.queries import item_counts, item_lines, payslips
from zerocontact.payroll.handlers.scheduler import recover, scheduler_tick
from zerocontact.payroll.handlers.treasury import (
    accrue_yield,
    balances,
    committed_for_batches,
    fund,
    run_sweep,
    top_up,
)

__all__ = [
    "VERIFIED_LEVELS",
    "BatchRefused",
    "Context",
    "FundsShort",
    "GigPayout",
    "InvalidState",
    "KeyReused",
    "MakerCheckerRequired",
    "NotVerified",
    "SubmitBatch",
    "TopUpConflict",
    "accrue_yield",
    "acting_employer",
    "approve_batch",
    "authorise_agent",
    "balances",
    "batch",
    "claim",
    "committed_for_batches",
    "drive_gig",
    "employer",
    "fingerprint",
    "fund",
    "item_counts",
    "item_lines",
    "may_act",
    "onboard_employer",
    "pay_gig",
    "payslips",
    "recover",
    "refusal_body",
    "run_sweep",
    "scheduler_tick",
    "submit_batch",
    "top_up",
]
