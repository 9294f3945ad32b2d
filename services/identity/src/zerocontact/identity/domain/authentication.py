"""Authentication rules: assurance levels, lockout with exponential back-off, TOTP, codes.

Pure computation only (hashing and HMACs are CPU work, not I/O): the handlers decide when
to call these and store the results.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import pyotp

TOTP_DIGITS = 6
TOTP_PERIOD_S = 30
# One step either side absorbs clock drift between the phone and the server (RFC 6238 §5.2).
TOTP_DRIFT_STEPS = 1
RECOVERY_CODES = 10
SMS_CODE_DIGITS = 6


class Aal(StrEnum):
    """Authentication assurance level (NIST SP 800-63B)."""

    AAL1 = "AAL1"
    AAL2 = "AAL2"


class Method(StrEnum):
    """Authentication method references (RFC 8176 ``amr`` values)."""

    PASSWORD = "pwd"
    TOTP = "otp"
    SMS = "sms"
    RECOVERY = "kba"  # RFC 8176 has no recovery-code value; knowledge-based is the closest


class Factor(StrEnum):
    """Factor kinds a customer can enrol."""

    PASSWORD = "password"
    TOTP = "totp"
    SMS = "sms"
    RECOVERY_CODE = "recovery_code"


def assurance(methods: set[Method]) -> Aal:
    """AAL2 takes a password plus a second, distinct factor; anything less is AAL1."""
    second = methods & {Method.TOTP, Method.SMS, Method.RECOVERY}
    return Aal.AAL2 if Method.PASSWORD in methods and second else Aal.AAL1


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock after ``threshold`` consecutive failures for ``base_s * 2**k`` (capped) seconds.

    ``k`` counts the locks since the last success, so a persistent attacker waits longer
    each round while a customer who mistypes once or twice is never locked.
    """

    threshold: int
    base_s: float
    max_s: float

    def lock_duration(self, previous_locks: int) -> timedelta:
        """How long the next lock lasts after ``previous_locks`` locks without a success."""
        return timedelta(seconds=min(self.base_s * 2 ** min(previous_locks, 32), self.max_s))


@dataclass
class Throttle:
    """Failure counters of one party or one source address."""

    failures: int = 0
    locks: int = 0
    locked_until: datetime | None = None

    def is_locked(self, now: datetime) -> bool:
        """True while a lock is in force."""
        return self.locked_until is not None and now < self.locked_until

    def retry_after_s(self, now: datetime) -> int:
        """Whole seconds until the lock ends (at least 1 while locked)."""
        if self.locked_until is None or now >= self.locked_until:
            return 0
        return max(1, int((self.locked_until - now).total_seconds() + 0.999))

    def record_failure(self, policy: LockoutPolicy, now: datetime) -> datetime | None:
        """Count a failure; return the lock's end when this failure locks."""
        if self.locked_until is not None and now >= self.locked_until:
            self.failures = 0  # the lock served: the next round counts from zero
            self.locked_until = None
        self.failures += 1
        if self.failures < policy.threshold:
            return None
        self.locked_until = now + policy.lock_duration(self.locks)
        self.locks += 1
        return self.locked_until

    def record_success(self) -> None:
        """A success clears the failures and the back-off."""
        self.failures = 0
        self.locks = 0
        self.locked_until = None


def new_totp_secret() -> str:
    """A fresh 160-bit TOTP secret, base32 (RFC 4226 recommends at least 128 bits)."""
    return pyotp.random_base32(length=32)


def totp_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S).provisioning_uri(
        name=account, issuer_name=issuer
    )


def match_totp(secret: str, code: str, *, now: datetime, last_step: int) -> int | None:
    """The time step ``code`` belongs to, or None.

    A step at or before ``last_step`` (already used) never matches: a code observed once
    cannot be replayed within its validity window.
    """
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_S)
    current = totp.timecode(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten single-use recovery codes, ``xxxxx-xxxxx`` (50 bits each, base32 without padding)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(7)).decode()[:10].lower()
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalise_recovery_code(code: str) -> str:
    """Case and separators do not matter when a code is typed back."""
    raw = "".join(c for c in code.lower() if c.isalnum())
    return f"{raw[:5]}-{raw[5:]}"


def new_sms_code() -> str:
    """A uniformly random 6-digit code."""
    return f"{secrets.randbelow(10**SMS_CODE_DIGITS):0{SMS_CODE_DIGITS}d}"


def code_digest(code: str, *, salt: str) -> str:
    """SHA-256 of a short code bound to its challenge; only this digest is ever stored."""
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


@dataclass
class SmsChallenge:
    """A pending SMS code: its digest, expiry and remaining attempts."""

    id: str
    customer_id: str
    code_digest: str
    expires_at: datetime
    attempts_left: int
    used: bool = False

    def accepts(self, code: str, now: datetime) -> bool:
        """True when ``code`` is right, in time, and attempts remain (the caller counts)."""
        if self.used or now >= self.expires_at or self.attempts_left <= 0:
            return False
        return hmac.compare_digest(code_digest(code, salt=self.id), self.code_digest)


@dataclass
class Credentials:
    """A customer's factors. Secrets are held as ciphertext or digests only."""

    password_hash: str
    totp_secret_encrypted: str | None = None
    totp_pending_encrypted: str | None = None
    totp_last_step: int = 0
    recovery_codes: dict[str, bool] = field(default_factory=dict)  # digest -> still usable

    @property
    def factors(self) -> list[Factor]:
        """Enrolled factors (SMS to the registered phone is always available)."""
        enrolled = [Factor.PASSWORD, Factor.SMS]
        if self.totp_secret_encrypted:
            enrolled.append(Factor.TOTP)
        if any(self.recovery_codes.values()):
            enrolled.append(Factor.RECOVERY_CODE)
        return enrolled
