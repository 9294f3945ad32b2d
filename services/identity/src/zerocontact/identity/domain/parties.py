"""Individual customers and enterprises: validation of their identity data, and the aggregates.

Checksums and number plans come from well-kept libraries (python-stdnum for resident IDs and
unified social credit codes, phonenumbers for phones), never from hand-written code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import phonenumbers
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError

from zerocontact.identity.domain.errors import InvalidIdentityData
from zerocontact.identity.domain.kyc import SYSTEM, KycLevel, KycTransition, transition
from zerocontact.platform.money import Money
from zerocontact.platform.pii import mask_national_id, mask_phone

# GB/T 4754-2017 industry sections (门类), the coarse business category of an enterprise.
BUSINESS_CATEGORIES = frozenset("ABCDEFGHIJKLMNOPQRST")
DEFAULT_PHONE_REGION = "CN"


def normalise_resident_id(value: str) -> str:
    """A valid Chinese resident ID (18 characters, checksum, real birth date), upper-cased."""
    try:
        return str(ric.validate(value)).upper()
    except ValidationError as exc:
        raise InvalidIdentityData(f"not a valid resident ID number: {exc}") from None


def birth_date_of(resident_id: str) -> date:
    """The birth date encoded in a valid resident ID."""
    return ric.get_birth_date(resident_id)


def normalise_phone(value: str) -> str:
    """A valid phone number in E.164 form; numbers without ``+`` are read as Chinese."""
    try:
        parsed = phonenumbers.parse(value, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidIdentityData("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentityData("not a valid phone number for its country")
    kind = phonenumbers.number_type(parsed)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidIdentityData("must be a mobile number (it receives one-time codes)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_credit_code(value: str) -> str:
    """A valid unified social credit code (统一社会信用代码, GB 32100-2015), upper-cased."""
    try:
        return str(uscc.validate(value)).upper()
    except ValidationError as exc:
        raise InvalidIdentityData(f"not a valid unified social credit code: {exc}") from None


def check_birth_date(resident_id: str, declared: date) -> None:
    """The declared birth date must be the one the resident ID encodes."""
    if birth_date_of(resident_id) != declared:
        raise InvalidIdentityData("date of birth does not match the resident ID number")


def mask_address(address: str) -> str:
    """Keep the first 6 characters (province and city, usually) of an address."""
    text = address.strip()
    return f"{text[:6]}****" if len(text) > 6 else "****"


@dataclass
class Customer:
    """An individual customer; personal data is held masked (the ciphertexts live in storage)."""

    id: str
    name: str
    id_number_masked: str
    phone_masked: str
    birth_date: date
    address_masked: str
    registered_at: datetime
    kyc_level: KycLevel = KycLevel.NONE
    kyc_history: list[KycTransition] = field(default_factory=list)
    version: int = 1


@dataclass
class Enterprise:
    """An enterprise: a legal entity acting through its legal representative (a customer)."""

    id: str
    name: str
    credit_code: str
    representative_id: str
    business_category: str
    registered_capital: Money
    registered_at: datetime
    kyc_level: KycLevel = KycLevel.NONE
    kyc_history: list[KycTransition] = field(default_factory=list)
    version: int = 1


def register_customer(
    *,
    customer_id: str,
    name: str,
    resident_id: str,
    phone: str,
    birth_date: date,
    address: str,
    now: datetime,
) -> Customer:
    """A customer at KYC BASIC: the data was validated here, so the first step is recorded."""
    rid = normalise_resident_id(resident_id)
    e164 = normalise_phone(phone)
    check_birth_date(rid, birth_date)
    if not name.strip():
        raise InvalidIdentityData("name must not be empty")
    customer = Customer(
        id=customer_id,
        name=name.strip(),
        id_number_masked=mask_national_id(rid),
        phone_masked=mask_phone(e164),
        birth_date=birth_date,
        address_masked=mask_address(address),
        registered_at=now,
    )
    basic = transition(
        KycLevel.NONE,
        KycLevel.BASIC,
        actor=SYSTEM,
        reason="identity data validated at registration",
        evidence="resident ID checksum and birth date, mobile number plan, no duplicate",
        now=now,
    )
    customer.kyc_level = basic.to_level
    customer.kyc_history.append(basic)
    return customer


def register_enterprise(
    *,
    enterprise_id: str,
    name: str,
    credit_code: str,
    representative: Customer,
    business_category: str,
    registered_capital: Money,
    now: datetime,
) -> Enterprise:
    """An enterprise at KYB BASIC; VERIFIED right away when its representative already is."""
    code = normalise_credit_code(credit_code)
    if business_category not in BUSINESS_CATEGORIES:
        raise InvalidIdentityData("business category must be a GB/T 4754 section letter A-T")
    if registered_capital.minor_units <= 0:
        raise InvalidIdentityData("registered capital must be positive")
    enterprise = Enterprise(
        id=enterprise_id,
        name=name.strip(),
        credit_code=code,
        representative_id=representative.id,
        business_category=business_category,
        registered_capital=registered_capital,
        registered_at=now,
    )
    basic = transition(
        KycLevel.NONE,
        KycLevel.BASIC,
        actor=SYSTEM,
        reason="business data validated at registration",
        evidence=f"credit code checksum, representative={representative.id}",
        now=now,
    )
    enterprise.kyc_history.append(basic)
    enterprise.kyc_level = basic.to_level
    if representative.kyc_level.rank >= KycLevel.VERIFIED.rank:
        enterprise.kyc_history.append(representative_verified(enterprise, representative.id, now))
        enterprise.kyc_level = KycLevel.VERIFIED
    return enterprise


def representative_verified(
    enterprise: Enterprise, representative_id: str, now: datetime
) -> KycTransition:
    """The KYB step that follows the legal representative reaching VERIFIED."""
    return transition(
        enterprise.kyc_level,
        KycLevel.VERIFIED,
        actor=SYSTEM,
        reason="legal representative is VERIFIED",
        evidence=f"representative={representative_id}",
        now=now,
    )
