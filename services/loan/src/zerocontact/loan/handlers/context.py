"""What every loan handler works with: its dependencies, the retry bound and who may act."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from cachetools import LRUCache

from zerocontact.loan import bookkeeping
from zerocontact.loan.domain.errors import NotYourApplication, UnknownProduct
from zerocontact.loan.domain.products import Product
from zerocontact.loan.rail import PaymentRail
from zerocontact.loan.relays import ShardedRelay
from zerocontact.loan.repository import LoanRepository
from zerocontact.platform.errors import NotYetKnown
from zerocontact.platform.ledger import Ledger, Side
from zerocontact.platform.projection import ProjectionWaits

MAX_ATTEMPTS = 10


@dataclass
class LoanDeps:
    """Everything a handler may touch; built once in the app's lifespan (or by a test)."""

    repo: LoanRepository
    ledger: Ledger
    rail: PaymentRail
    relay: ShardedRelay
    catalog: Mapping[str, Product]
    topic: str
    alert_window: timedelta = timedelta(days=30)
    rail_max_attempts: int = 3
    # Requests naming a party loan has not heard of (or not at the needed KYC level) wait this
    # long for identity's events before answering (the consumer wakes them).
    party_waits: ProjectionWaits = field(default_factory=ProjectionWaits)
    # Accounts this process opened lately (opening is idempotent; this saves the insert). The
    # most recently used only: every loan opens two, never to open them again.
    _accounts: LRUCache[str, bool] = field(default_factory=lambda: LRUCache(maxsize=4096))
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def product(self, product_id: str) -> Product:
        """The product, or a 422 ``unknown_product``."""
        try:
            return self.catalog[product_id]
        except KeyError:
            raise UnknownProduct(f"no product {product_id!r}", field="body.product_id") from None

    async def open_account(
        self, account: str, side: Side, allow_negative: bool, currency: str
    ) -> None:
        """Open a ledger account once per process (opening is idempotent in the ledger)."""
        if account in self._accounts:
            return
        await self.ledger.open_account(
            account, currency=currency, normal_balance=side, allow_negative=allow_negative
        )
        self._accounts[account] = True

    @contextlib.asynccontextmanager
    async def serialized(self, accounts: list[str]) -> AsyncIterator[None]:
        """Serialize this process's postings on hot accounts (the funders' funding accounts):
        the ledger is safe without it, but queued writers beat optimistic retries."""
        locks = [self._locks.setdefault(a, asyncio.Lock()) for a in sorted(set(accounts))]
        async with contextlib.AsyncExitStack() as stack:
            for lock in locks:
                await stack.enter_async_context(lock)
            yield


async def prepare_ledger(deps: LoanDeps) -> None:
    """Open every product's accounts and give each funder its quota (idempotent)."""
    for product in deps.catalog.values():
        for account, side, negative in bookkeeping.product_accounts(product):
            await deps.open_account(account, side, negative, product.currency)
        for posting_id, legs in bookkeeping.quota_posting(product):
            await deps.ledger.post(posting_id, legs, memo="funder quota")


async def authorize(deps: LoanDeps, *, party_id: str, subject: str) -> None:
    """The caller acts for ``party_id``: it is the party, or its legal representative.

    A party loan has not heard of yet is waited for (bounded), then ``party_not_yet_known``."""
    if subject == party_id:
        return
    waited = await deps.party_waits.until(
        party_id, lambda: deps.repo.party_known(party_id), lambda known: known[0]
    )
    known, representative = waited.value
    if not known:
        raise not_yet_known(deps, party_id)
    if representative == subject:
        return
    raise NotYourApplication("the authenticated person may not act for this party")


def not_yet_known(deps: LoanDeps, party_id: str) -> NotYetKnown:
    """503 ``party_not_yet_known``: identity's events about the party have not reached loan
    within the bounded wait; the same request can succeed shortly (``Retry-After``)."""
    return NotYetKnown(
        f"loan has not yet heard of party {party_id} from identity "
        f"(waited {deps.party_waits.within_s:g} s); retry shortly",
        party_id=party_id,
        retry_after_s=1.0,
    )
