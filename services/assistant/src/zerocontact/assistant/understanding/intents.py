"""Every intent the assistant understands, in one place.

``faq`` is answered by a knowledge-base article; the ``loan.*``, ``payroll.*`` and
``identity.*`` intents are actions the service performs with the customer's own token;
``unknown`` is what a question becomes below the confidence threshold.
"""

from __future__ import annotations

from typing import Final

FAQ: Final = "faq"
UNKNOWN: Final = "unknown"
HANDOFF: Final = "handoff.request"
COMPLAINT: Final = "complaint"

LOAN_APPLICATION_STATUS: Final = "loan.application_status"
LOAN_NEXT_INSTALLMENT: Final = "loan.next_installment"
LOAN_EARLY_REPAYMENT_QUOTE: Final = "loan.early_repayment_quote"
LOAN_REPAY: Final = "loan.repay"
PAYROLL_BATCH_STATUS: Final = "payroll.batch_status"
IDENTITY_LOCK_DEVICE: Final = "identity.lock_device"
IDENTITY_REVOKE_SESSIONS: Final = "identity.revoke_sessions"

CONFIRM_YES: Final = "confirm.yes"
CONFIRM_NO: Final = "confirm.no"
GREETING: Final = "greeting"
THANKS: Final = "thanks"

# Actions the service performs for the customer, each with the slot it needs.
ACTIONS: Final[dict[str, str | None]] = {
    LOAN_APPLICATION_STATUS: "application_id",
    LOAN_NEXT_INSTALLMENT: "loan_id",
    LOAN_EARLY_REPAYMENT_QUOTE: "loan_id",
    LOAN_REPAY: "loan_id",
    PAYROLL_BATCH_STATUS: "batch_id",
    IDENTITY_LOCK_DEVICE: None,
    IDENTITY_REVOKE_SESSIONS: None,
}
# Actions that move money: the service asks for confirmation (and step-up) first.
MOVES_MONEY: Final = frozenset({LOAN_REPAY})

INTENTS: Final[tuple[str, ...]] = (
    FAQ,
    *ACTIONS,
    HANDOFF,
    COMPLAINT,
    CONFIRM_YES,
    CONFIRM_NO,
    GREETING,
    THANKS,
    UNKNOWN,
)
