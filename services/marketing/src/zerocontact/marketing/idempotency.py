"""Idempotent HTTP commands: the ``Idempotency-Key`` record is claimed before the work runs.

One document per (scope, key), ``_id`` = ``scope:key`` (the unique ``_id`` index is the lock,
so no transaction is needed on FerretDB):

1. insert ``{state: "in_flight", fingerprint, token, started_s}``; a duplicate key means
   someone used the key before:
   - another request (different fingerprint) → 422 ``idempotency_key_reused``;
   - the same request, answered → the stored response (a replay);
   - the same request, still in flight → 409 ``request_in_progress`` (retry later);
   - the same request, in flight for longer than the lease (its process died) → this
     request takes the record over by compare-and-set on its ``token`` and runs.
2. run the command;
3. store the response (``state: "done"``), guarded by the token. A command that raises
   deletes its record, so a retry with the same key runs again (refusals are not stored).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.errors import DomainError, Invalid
from zerocontact.platform.ids import new_id
from zerocontact.platform.mongo import Document

IN_FLIGHT = "in_flight"
DONE = "done"


class RequestInProgress(DomainError):
    """The first request with this key has not answered yet; retry shortly."""

    code = "request_in_progress"


class IdempotencyKeyReused(Invalid):
    """The key was used before with a different request."""

    code = "idempotency_key_reused"


def fingerprint(payload: Any) -> str:
    """A stable hash of the request (body and caller), never the request itself."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def run_once(
    records: AsyncCollection[Document],
    *,
    scope: str,
    key: str,
    payload: Any,
    compute: Callable[[], Awaitable[Any]],
    lease_s: float,
) -> Any:
    """Run ``compute`` once per (scope, key) and return its JSON-able response; see the module
    docstring for what duplicates get."""
    doc_id = f"{scope}:{key}"
    digest = fingerprint(payload)
    token = new_id()
    # Wall-clock seconds: the lease is about a process dying, not about business time.
    started = time.time()
    try:
        await records.insert_one(
            {
                "_id": doc_id,
                "state": IN_FLIGHT,
                "fingerprint": digest,
                "token": token,
                "started_s": started,
            }
        )
    except DuplicateKeyError:
        stored = await records.find_one({"_id": doc_id})
        if stored is None:  # the first attempt failed and released the key just now
            raise RequestInProgress(
                f"a request with key {key} was just running; retry", retry=True
            ) from None
        if stored.get("fingerprint") != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key} was used for another request", field="Idempotency-Key"
            ) from None
        if stored.get("state") == DONE:
            return json.loads(stored["response"])
        if started - float(stored.get("started_s", 0.0)) < lease_s:
            raise RequestInProgress(
                f"a request with key {key} is still running; retry", retry=True
            ) from None
        taken = await records.update_one(
            {"_id": doc_id, "state": IN_FLIGHT, "token": stored.get("token")},
            {"$set": {"token": token, "started_s": started}},
        )
        if taken.modified_count != 1:
            raise RequestInProgress(
                f"a request with key {key} is still running; retry", retry=True
            ) from None
    try:
        response = await compute()
    except Exception:
        await records.delete_one({"_id": doc_id, "token": token})
        raise
    text = json.dumps(response, default=str)
    await records.update_one(
        {"_id": doc_id, "token": token},
        {"$set": {"state": DONE, "response": text}, "$unset": {"token": ""}},
    )
    return json.loads(text)


__all__ = ["IdempotencyKeyReused", "RequestInProgress", "fingerprint", "run_once"]
