"""Request and response bodies. Identity data is validated here with the domain's rules,
so malformed input is a 422 naming the field (never echoing its value) and stores nothing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from zerocontact.identity.domain import parties
from zerocontact.identity.domain.authentication import Factor
from zerocontact.identity.domain.kyc import KycLevel, KycTransition
from zerocontact.identity.handlers.authentication import TokenPair
from zerocontact.platform.money import InvalidAmount, Money, UnknownCurrency


class RegisterCustomerRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    resident_id: str = Field(
        min_length=15, max_length=18, description="居民身份证号码, 18 characters"
    )
    phone: str = Field(
        min_length=6, max_length=20, description="mobile number, E.164 or Chinese national"
    )
    date_of_birth: date
    address: str = Field(min_length=4, max_length=200)
    password: str = Field(min_length=10, max_length=128, description="at least 10 characters")

    @field_validator("resident_id")
    @classmethod
    def _resident_id(cls, value: str) -> str:
        return parties.normalise_resident_id(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return parties.normalise_phone(value)

    @field_validator("date_of_birth")
    @classmethod
    def _birth_date(cls, value: date, info: ValidationInfo) -> date:
        resident_id = info.data.get("resident_id")
        if resident_id:  # absent when the ID itself was refused
            parties.check_birth_date(resident_id, value)
        return value


class MoneyBody(BaseModel):
    amount: Decimal = Field(gt=0, max_digits=20, description="major units, e.g. 1000000.00")
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    def money(self) -> Money:
        """As :class:`Money` (raises ValueError on an amount finer than the currency allows)."""
        try:
            return Money.of(self.amount, self.currency)
        except (InvalidAmount, UnknownCurrency) as exc:
            raise ValueError(str(exc)) from None


class RegisterEnterpriseRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    credit_code: str = Field(min_length=18, max_length=18, description="统一社会信用代码")
    legal_representative_id: str = Field(pattern=r"^[0-9a-f-]{36}$")
    business_category: str = Field(pattern=r"^[A-T]$", description="GB/T 4754 section letter")
    registered_capital: MoneyBody

    @field_validator("credit_code")
    @classmethod
    def _credit_code(cls, value: str) -> str:
        return parties.normalise_credit_code(value)

    @field_validator("registered_capital")
    @classmethod
    def _capital(cls, value: MoneyBody) -> MoneyBody:
        value.money()
        return value


class KycTransitionView(BaseModel):
    from_level: KycLevel
    to_level: KycLevel
    actor: str
    reason: str
    evidence: str
    at: datetime

    @classmethod
    def of(cls, t: KycTransition) -> KycTransitionView:
        return cls(
            from_level=t.from_level, to_level=t.to_level, actor=t.actor, reason=t.reason,
            evidence=t.evidence, at=t.at,
        )  # fmt: skip


class CustomerView(BaseModel):
    customer_id: str
    name: str
    resident_id: str = Field(description="masked")
    phone: str = Field(description="masked")
    address: str = Field(description="masked")
    kyc_level: KycLevel
    kyc_history: list[KycTransitionView]
    registered_at: datetime

    @classmethod
    def of(cls, c: parties.Customer) -> CustomerView:
        return cls(
            customer_id=c.id, name=c.name, resident_id=c.id_number_masked, phone=c.phone_masked,
            address=c.address_masked, kyc_level=c.kyc_level,
            kyc_history=[KycTransitionView.of(t) for t in c.kyc_history],
            registered_at=c.registered_at,
        )  # fmt: skip


class EnterpriseView(BaseModel):
    enterprise_id: str
    name: str
    credit_code: str
    legal_representative_id: str
    business_category: str
    registered_capital: str
    registered_capital_minor: int
    currency: str
    kyc_level: KycLevel
    kyc_history: list[KycTransitionView]
    registered_at: datetime

    @classmethod
    def of(cls, e: parties.Enterprise) -> EnterpriseView:
        return cls(
            enterprise_id=e.id, name=e.name, credit_code=e.credit_code,
            legal_representative_id=e.representative_id, business_category=e.business_category,
            registered_capital=str(e.registered_capital.to_decimal()),
            registered_capital_minor=e.registered_capital.minor_units,
            currency=e.registered_capital.currency, kyc_level=e.kyc_level,
            kyc_history=[KycTransitionView.of(t) for t in e.kyc_history],
            registered_at=e.registered_at,
        )  # fmt: skip


class OperatorTransitionRequest(BaseModel):
    target_level: KycLevel
    reason: str = Field(min_length=3, max_length=500)
    evidence: str = Field(min_length=1, max_length=500)


class LoginRequest(BaseModel):
    phone: str = Field(min_length=6, max_length=20)
    password: str = Field(min_length=1, max_length=128)
    totp_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class StepUpRequest(BaseModel):
    method: Literal[Factor.TOTP, Factor.SMS, Factor.RECOVERY_CODE]
    code: str = Field(min_length=6, max_length=16, pattern=r"^[0-9A-Za-z-]+$")
    challenge_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$")


class TokenView(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    session_id: str
    aal: str
    amr: list[str]

    @classmethod
    def of(cls, pair: TokenPair) -> TokenView:
        return cls(
            access_token=pair.access_token, expires_in=pair.expires_in,
            refresh_token=pair.refresh_token, session_id=pair.session_id, aal=str(pair.aal),
            amr=[str(m) for m in pair.methods],
        )  # fmt: skip


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=40, max_length=200)


class SmsChallengeView(BaseModel):
    challenge_id: str
    expires_at: datetime


class TotpEnrolmentView(BaseModel):
    otpauth_uri: str
    secret: str = Field(description="base32; shown once, also inside the URI")


class TotpConfirmRequest(BaseModel):
    code: str = Field(pattern=r"^[0-9]{6}$")


class RecoveryCodesView(BaseModel):
    recovery_codes: list[str] = Field(description="single use; shown this once")


class ChangePhoneRequest(BaseModel):
    phone: str = Field(min_length=6, max_length=20)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return parties.normalise_phone(value)


class DeliveryView(BaseModel):
    delivery_id: str
    sealed: str = Field(description="HPKE ciphertext, base64url; only the SMS gateway opens it")


class RevokedView(BaseModel):
    revoked: bool = True


class SessionView(BaseModel):
    """One live session of the caller (a login on a device)."""

    session_id: str
    device_id: str
    aal: str
    auth_time: datetime
    expires_at: datetime
    current: bool


class DeviceView(BaseModel):
    """A device the caller is signed in on."""

    device_id: str
    sessions: int
    current: bool


class MySessionsView(BaseModel):
    """The caller's live sessions and the devices they are on."""

    sessions: list[SessionView]
    devices: list[DeviceView]


class RevokeSessionsRequest(BaseModel):
    """Which of the caller's other sessions to end: those on ``device_id`` (a lost device),
    or all of them when it is absent. The current session is never ended."""

    model_config = ConfigDict(extra="forbid")

    device_id: str | None = Field(default=None, min_length=1, max_length=128)


class SessionsRevokedView(BaseModel):
    """How many live sessions were ended."""

    revoked: int
