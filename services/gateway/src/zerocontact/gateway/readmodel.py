"""The gateway's read model: service views it already read, served again until the services'
events (or the partner's own mutations) say they changed.

A ``Get*`` call through the gateway costs the service behind it a token verification and a
database read, and the gateway an HTTP round trip; a partner polling a loan pays that on every
call. :class:`ReadModel` keeps the last view read per resource key (``loan:<id>``, the keys of
the event hub) and serves it again while all of these hold:

* **No event since.** The event hub (:class:`~zerocontact.gateway.watch.EventHub`), which
  reads the loan topic anyway for watch streams, calls :meth:`ReadModel.changed` for every
  key an event names: the entry is dropped. A read that started before the event is not
  stored (each key's generation is taken when the read starts and checked when it ends).
* **No mutation by the partner since (read-your-writes).** Every mutating call of a partner
  through this instance moves the partner's epoch when it ends (:meth:`ReadModel.mutated`);
  an entry filled before is not served, nor is one whose read overlapped the mutation.
* **Young enough.** An entry older than ``max_age_s`` is read again: the bound on staleness
  for a change no event announces (a failed disbursement) or an event this instance has not
  read yet (another instance's mutation, a lagging consumer).

What it does not decide: who may see a view. The servicer keeps the partner's ownership check
and verifies the party's token itself before serving an entry (see
:meth:`LoanServicer.GetLoan`); anything it cannot decide locally goes to the service.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stamp:
    """When a read started: the key's generation and the partner's epoch at that moment."""

    era: int
    generation: int
    epoch: int


@dataclass(frozen=True)
class _Entry:
    view: Any
    stamp: Stamp
    stored_at: float


class ReadModel:
    """Views by resource key, dropped by events and the partner's own mutations (module doc)."""

    def __init__(
        self,
        *,
        max_age_s: float,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self.capacity = capacity
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._generations: dict[str, int] = defaultdict(int)
        self._epochs: dict[str, int] = defaultdict(int)
        self._era = 0  # moves when the generations are forgotten (capacity)
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """False when ``max_age_s`` is 0: every read goes to the service."""
        return self.max_age_s > 0

    def begin(self, key: str, partner_id: str) -> Stamp:
        """Take before reading ``key`` from the service; pass to :meth:`store` afterwards."""
        return Stamp(self._era, self._generations.get(key, 0), self._epochs.get(partner_id, 0))

    def get(self, key: str, partner_id: str) -> Any | None:
        """The view stored for ``key`` if it may still be served to ``partner_id``, else None."""
        entry = self._entries.get(key)
        if (
            entry is None
            or entry.stamp.epoch != self._epochs.get(partner_id, 0)
            or self.clock() - entry.stored_at > self.max_age_s
        ):
            self.misses += 1
            return None
        self.hits += 1
        return entry.view

    def store(self, key: str, view: Any, stamp: Stamp) -> None:
        """Keep ``view`` unless ``key`` changed since ``stamp`` was taken."""
        if not self.enabled or stamp.era != self._era:
            return
        if stamp.generation != self._generations.get(key, 0):
            return  # an event about it arrived while it was being read
        if len(self._entries) >= self.capacity:
            self._forget()
        self._entries[key] = _Entry(view, stamp, self.clock())

    def changed(self, key: str) -> None:
        """An event names ``key``: drop its view; a read in flight is not stored."""
        self._entries.pop(key, None)
        if len(self._generations) >= 2 * self.capacity:
            self._forget()
        self._generations[key] += 1

    def mutated(self, partner_id: str) -> None:
        """A mutating call of ``partner_id`` ended: nothing read before is served to it."""
        self._epochs[partner_id] += 1

    def _forget(self) -> None:
        """Crude bound: forget every entry and generation; a new era refuses older reads."""
        self._entries.clear()
        self._generations.clear()
        self._era += 1
