"""The gateway's gRPC services, one module each: every RPC checks ownership, calls one
service's HTTP API and maps the answer. The envelope (authentication, scopes, rate, deadline,
idempotency, audit, errors) is :mod:`zerocontact.gateway.guard`."""

from __future__ import annotations

from zerocontact.gateway.servicers.assistant import AssistantServicer
from zerocontact.gateway.servicers.identity import IdentityServicer
from zerocontact.gateway.servicers.loan import LOAN_TERMINAL, LoanServicer
from zerocontact.gateway.servicers.payroll import BATCH_TERMINAL, PayrollServicer
from zerocontact.gateway.servicers.scopes import (
    ASSISTANT_READ,
    ASSISTANT_WRITE,
    IDENTITY_READ,
    IDENTITY_WRITE,
    LOANS_READ,
    LOANS_WRITE,
    PAYROLL_READ,
    PAYROLL_WRITE,
    SCOPES,
    SIGNALS_READ,
)
from zerocontact.gateway.servicers.signals import SignalServicer

__all__ = [
    "ASSISTANT_READ",
    "ASSISTANT_WRITE",
    "BATCH_TERMINAL",
    "IDENTITY_READ",
    "IDENTITY_WRITE",
    "LOANS_READ",
    "LOANS_WRITE",
    "LOAN_TERMINAL",
    "PAYROLL_READ",
    "PAYROLL_WRITE",
    "SCOPES",
    "SIGNALS_READ",
    "AssistantServicer",
    "IdentityServicer",
    "LoanServicer",
    "PayrollServicer",
    "SignalServicer",
]
