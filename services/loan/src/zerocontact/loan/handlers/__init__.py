"""Commands and events of the loan service → domain → repository, ledger, rail and outbox.

One module per use case; the public names are re-exported here, so callers keep writing
``from zerocontact.loan.handlers import X`` or ``handlers.x``.
"""

from zerocontact.loan.handlers.applications import (
    SubmitApplication,
    decide_application,
    submit_application,
)
from zerocontact.loan.handlers.context import MAX_ATTEMPTS, LoanDeps, authorize, prepare_ledger
from zerocontact.loan.handlers.disbursement import accept_offer, book_loan, disburse_loan
from zerocontact.loan.handlers.overdue import OverdueTransition, scan_overdue
from zerocontact.loan.handlers.recovery import recover
from zerocontact.loan.handlers.repayment import (
    RepaymentRefused,
    RepaymentResult,
    complete_repayment,
    payoff_quote,
    repay,
)
from zerocontact.loan.handlers.reports import report_revenue

__all__ = [
    "MAX_ATTEMPTS",
    "LoanDeps",
    "OverdueTransition",
    "RepaymentRefused",
    "RepaymentResult",
    "SubmitApplication",
    "accept_offer",
    "authorize",
    "book_loan",
    "complete_repayment",
    "decide_application",
    "disburse_loan",
    "payoff_quote",
    "prepare_ledger",
    "recover",
    "repay",
    "report_revenue",
    "scan_overdue",
    "submit_application",
]
