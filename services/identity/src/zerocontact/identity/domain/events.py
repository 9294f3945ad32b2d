"""Domain events of identity (past tense); mapped to protobuf by the handlers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from zerocontact.identity.domain.authentication import Aal, Factor, Method
from zerocontact.identity.domain.kyc import KycTransition
from zerocontact.identity.domain.parties import Customer, Enterprise


@dataclass(frozen=True)
class CustomerRegistered:
    customer: Customer


@dataclass(frozen=True)
class EnterpriseRegistered:
    enterprise: Enterprise


@dataclass(frozen=True)
class KycLevelChanged:
    party_id: str
    is_enterprise: bool
    transition: KycTransition


@dataclass(frozen=True)
class FactorEnrolled:
    customer_id: str
    factor: Factor
    at: datetime


@dataclass(frozen=True)
class AuthenticationSucceeded:
    customer_id: str
    aal: Aal
    methods: tuple[Method, ...]
    session_id: str
    device_id: str
    source_address: str
    at: datetime


@dataclass(frozen=True)
class AuthenticationFailed:
    customer_id: str
    factor: Factor
    consecutive_failures: int
    device_id: str
    source_address: str
    at: datetime


@dataclass(frozen=True)
class AccountLocked:
    customer_id: str
    consecutive_failures: int
    locked_until: datetime
    source_address: str
    at: datetime


IdentityDomainEvent = (
    CustomerRegistered
    | EnterpriseRegistered
    | KycLevelChanged
    | FactorEnrolled
    | AuthenticationSucceeded
    | AuthenticationFailed
    | AccountLocked
)
