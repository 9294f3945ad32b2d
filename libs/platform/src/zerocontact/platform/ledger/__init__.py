"""Double-entry ledger on a MongoDB-wire store without multi-document transactions.

FerretDB 1.24 has no transactions, and upstream its updates are not atomic either: it reads
the document, applies the operators in Go, and writes the result back by ``_id`` with no
check (FerretDB#3040; measured: 100 concurrent ``$inc`` of 1 gave 21). The embedded engine is
patched to serialize writes (docs/architecture.md, decision 2), but money should not rest on a patch, so
this ledger changes state only by inserts that a unique index arbitrates — the one write every
MongoDB-wire server makes atomic:

* ``ledger_entries`` is, per account, an append-only chain: entry ``seq`` n+1 carries the
  running balance, and the unique index ``(account, seq)`` lets exactly one writer append it
  (optimistic concurrency: the loser re-reads the head and retries). A second unique index
  ``(posting_id, account, slot)`` lets a posting touch an account at most once per slot
  (``leg``, then ``undo``), so every step can be re-run by anyone at any time.
* ``ledger_outcomes`` holds one decision per posting (``COMMITTED`` or ``REJECTED``); the
  first insert wins and the decision never changes.
* ``ledger_postings`` (the request, keyed by its idempotency id) and ``ledger_accounts``
  (attributes plus a ``head_seq``/``balance_minor`` hint) are updated best-effort; they are
  projections, never the authority.

See docs/ledger.md for the protocol and its recovery guarantees.

The pure rules (:mod:`.rules`) are imported eagerly; :class:`Ledger` (:mod:`.store`, PyMongo) is
loaded on first access, so a domain module that imports ``Leg``/``Side`` from here does not pull
PyMongo into its process (``tests/unit/test_domain_purity.py``, the import-linter contracts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zerocontact.platform.ledger.rules import (
    Account,
    AccountConflict,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidPosting,
    InvariantReport,
    LedgerContention,
    LedgerError,
    Leg,
    Posting,
    PostingState,
    Side,
    StepHook,
    UnbalancedPosting,
    UnknownAccount,
    account_deltas,
    application_plan,
    validate_legs,
)

if TYPE_CHECKING:  # import-linter ignores this (exclude_type_checking_imports)
    from zerocontact.platform.ledger.store import Ledger

__all__ = [
    "Account",
    "AccountConflict",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidPosting",
    "InvariantReport",
    "Ledger",
    "LedgerContention",
    "LedgerError",
    "Leg",
    "Posting",
    "PostingState",
    "Side",
    "StepHook",
    "UnbalancedPosting",
    "UnknownAccount",
    "account_deltas",
    "application_plan",
    "validate_legs",
]


def __getattr__(name: str) -> Any:
    """Load :class:`Ledger` (and with it PyMongo) only when someone asks for it (PEP 562)."""
    if name == "Ledger":
        store = importlib.import_module("zerocontact.platform.ledger.store")
        globals()["Ledger"] = store.Ledger
        return store.Ledger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
