"""Commands of the accounts app and the events they emit, as protobuf CloudEvents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxEvent, OutboxRelay, protobuf_event
from zerocontact.platform.pii import FieldCipher, mask_phone
from zerocontact.skeleton import domain
from zerocontact.skeleton.repository import ACCOUNTS, AccountRepository, ConcurrentUpdate
from zerocontact.skeleton.v1 import events_pb2

SOURCE = "/zerocontact/skeleton/accounts"
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class OpenAccount:
    open_key: str
    holder_name: str
    holder_phone: str
    currency: str


@dataclass(frozen=True)
class RecordDeposit:
    account_id: str
    deposit_id: str
    amount: Money


def _timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def to_cloud_event(
    event: domain.AccountOpened | domain.DepositRecorded, *, topic: str
) -> OutboxEvent:
    """The protobuf CloudEvent for a domain event, keyed by the account."""
    wrapper = events_pb2.SkeletonEvent()
    if isinstance(event, domain.AccountOpened):
        opened = wrapper.account_opened
        opened.account_id = event.account_id
        opened.holder_name = event.holder_name
        opened.holder_phone = event.holder_phone_masked
        opened.opened_at.CopyFrom(_timestamp(event.opened_at))
        moment = event.opened_at
    else:
        deposit = wrapper.deposit_recorded
        deposit.account_id = event.account_id
        deposit.deposit_id = event.deposit_id
        deposit.amount.CopyFrom(event.amount.to_proto())
        deposit.balance_after.CopyFrom(event.balance_after.to_proto())
        deposit.recorded_at.CopyFrom(_timestamp(event.recorded_at))
        moment = event.recorded_at
    return protobuf_event(
        wrapper,
        topic=topic,
        key=event.account_id,
        source=SOURCE,
        time=moment,
    )


async def open_account(
    cmd: OpenAccount,
    *,
    repo: AccountRepository,
    cipher: FieldCipher,
    relay: OutboxRelay,
    topic: str,
) -> domain.Account:
    """Open an account; the same key with the same request returns the first account."""
    request = domain.fingerprint(cmd.holder_name, cmd.holder_phone, cmd.currency)
    existing = await repo.get_by_open_key(cmd.open_key)
    if existing is None:
        account, opened = domain.open_account(
            account_id=new_id(),
            holder_name=cmd.holder_name,
            holder_phone_masked=mask_phone(cmd.holder_phone),
            currency=cmd.currency,
            now=datetime.now(UTC),
        )
        event = to_cloud_event(opened, topic=topic)
        added = await repo.add(
            account,
            open_key=cmd.open_key,
            open_fingerprint=request,
            holder_phone_encrypted=cipher.encrypt(
                cmd.holder_phone, context="skeleton.holder_phone"
            ),
            holder_phone_index=cipher.blind_index(cmd.holder_phone),
            events=[event],
        )
        if added:
            relay.nudge(ACCOUNTS, account.id)
            return account
        existing = await repo.get_by_open_key(cmd.open_key)  # a concurrent retry won the race
        assert existing is not None
    account, first_request = existing
    if first_request != request:
        raise domain.IdempotencyConflict(f"key {cmd.open_key} opened an account with other details")
    return account


async def record_deposit(
    cmd: RecordDeposit,
    *,
    repo: AccountRepository,
    relay: OutboxRelay,
    topic: str,
) -> domain.Account:
    """Credit a deposit exactly once per deposit id."""
    for _ in range(MAX_ATTEMPTS):
        account = await repo.get(cmd.account_id)
        if account is None:
            raise NotFound(f"account {cmd.account_id} does not exist")
        recorded = domain.record_deposit(
            account, deposit_id=cmd.deposit_id, amount=cmd.amount, now=datetime.now(UTC)
        )
        if recorded is None:
            return account  # a retry of a deposit already recorded
        event = to_cloud_event(recorded, topic=topic)
        try:
            await repo.save_deposit(account, deposit_id=cmd.deposit_id, events=[event])
        except ConcurrentUpdate:
            continue
        relay.nudge(ACCOUNTS, account.id)
        return account
    raise domain.IdempotencyConflict(f"account {cmd.account_id} is too busy, retry", retry=True)
