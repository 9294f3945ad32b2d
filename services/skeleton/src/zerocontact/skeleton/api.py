"""HTTP routes of the walking skeleton's two apps."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from zerocontact.platform.deps import IdempotencyKey
from zerocontact.platform.errors import Invalid, NotFound
from zerocontact.platform.money import InvalidAmount, Money, UnknownCurrency, currency_exponent
from zerocontact.skeleton import domain, handlers

AccountId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class OpenAccountRequest(BaseModel):
    holder_name: str = Field(min_length=1, max_length=100)
    holder_phone: str = Field(pattern=r"^\+[1-9][0-9]{7,14}$", description="E.164")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class DepositRequest(BaseModel):
    amount: Decimal = Field(gt=0, max_digits=18, description="in major units, e.g. 125.50")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class AccountView(BaseModel):
    account_id: str
    holder_name: str
    holder_phone: str  # masked
    currency: str
    balance: str
    balance_minor: int
    version: int

    @classmethod
    def of(cls, account: domain.Account) -> AccountView:
        return cls(
            account_id=account.id,
            holder_name=account.holder_name,
            holder_phone=account.holder_phone_masked,
            currency=account.currency,
            balance=str(account.balance.to_decimal()),
            balance_minor=account.balance.minor_units,
            version=account.version,
        )


class InvalidMoney(Invalid):
    code = "invalid_amount"


accounts_router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@accounts_router.post("", status_code=201)
async def open_account(
    body: OpenAccountRequest, key: IdempotencyKey, request: Request
) -> AccountView:
    deps = request.app.state.deps
    try:
        currency_exponent(body.currency)
    except UnknownCurrency as exc:
        raise InvalidMoney(str(exc), field="currency") from exc
    account = await handlers.open_account(
        handlers.OpenAccount(key, body.holder_name, body.holder_phone, body.currency),
        repo=deps.repo,
        cipher=deps.cipher,
        relay=deps.relay,
        topic=deps.settings.topic,
    )
    return AccountView.of(account)


@accounts_router.post("/{account_id}/deposits")
async def record_deposit(
    account_id: AccountId, body: DepositRequest, key: IdempotencyKey, request: Request
) -> AccountView:
    deps = request.app.state.deps
    try:
        amount = Money.of(body.amount, body.currency)
    except (InvalidAmount, UnknownCurrency) as exc:
        raise InvalidMoney(str(exc), field="amount") from exc
    account = await handlers.record_deposit(
        handlers.RecordDeposit(account_id, key, amount),
        repo=deps.repo,
        relay=deps.relay,
        topic=deps.settings.topic,
    )
    return AccountView.of(account)


@accounts_router.get("/{account_id}")
async def get_account(account_id: AccountId, request: Request) -> AccountView:
    account = await request.app.state.deps.repo.get(account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return AccountView.of(account)


balances_router = APIRouter(prefix="/v1/balances", tags=["balances"])


@balances_router.get("/{account_id}")
async def get_balance(account_id: AccountId, request: Request) -> dict[str, Any]:
    doc = await request.app.state.deps.balances.find_one({"_id": account_id}, {"_applied": 0})
    if doc is None:
        raise NotFound(f"no balance for account {account_id} yet")
    return {
        "account_id": doc["_id"],
        "currency": doc.get("currency"),
        "balance_minor": int(doc.get("balance_minor", 0)),
        "deposits": int(doc.get("deposits", 0)),
    }
