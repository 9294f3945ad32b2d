"""Login, second factors, step-up, sessions and factor enrolment.

Every failure is counted per customer (lockout with exponential back-off, AccountLocked) and
per source address; the customer's counters and the events they cause are one write.
The steps live in :mod:`.login`, :mod:`.sessions` and :mod:`.factors`; what they share
(the client, loading the customer, counting failures) in :mod:`.attempts`.
"""

from zerocontact.identity.handlers.authentication.attempts import MAX_ATTEMPTS, Busy, Client
from zerocontact.identity.handlers.authentication.factors import (
    TotpEnrolment,
    change_phone,
    confirm_totp,
    enrol_totp,
)
from zerocontact.identity.handlers.authentication.login import (
    SmsChallengeStarted,
    login,
    start_sms_challenge,
    step_up,
)
from zerocontact.identity.handlers.authentication.sessions import (
    TokenPair,
    live_sessions,
    refresh,
    revoke,
    revoke_other_sessions,
)

__all__ = [
    "MAX_ATTEMPTS",
    "Busy",
    "Client",
    "SmsChallengeStarted",
    "TokenPair",
    "TotpEnrolment",
    "change_phone",
    "confirm_totp",
    "enrol_totp",
    "live_sessions",
    "login",
    "refresh",
    "revoke",
    "revoke_other_sessions",
    "start_sms_challenge",
    "step_up",
]
