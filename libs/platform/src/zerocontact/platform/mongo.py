"""MongoDB through PyMongo's asyncio API: the client, readiness and start-up indexes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def create_mongo_client(uri: str, *, app_name: str) -> AsyncMongoClient[Document]:
    """A client for the service's lifespan. Nothing connects until the first operation."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=3_000,
    )


async def mongo_ready(client: AsyncMongoClient[Document], within_s: float = 2.0) -> bool:
    """True when the server answers ``ping`` within ``within_s``."""
    try:
        await asyncio.wait_for(client.admin.command("ping"), within_s)
    except Exception:  # unreachable, timed out or refused: not ready
        return False
    return True


@dataclass(frozen=True)
class CollectionIndexes:
    """The indexes one collection needs."""

    collection: str
    indexes: Sequence[IndexModel] = field(default_factory=tuple)


async def ensure_indexes(db: AsyncDatabase[Document], specs: Sequence[CollectionIndexes]) -> None:
    """Create the indexes at start-up (idempotent: existing ones are left as they are)."""
    for spec in specs:
        # One index per command: FerretDB 1.24 panics on a createIndexes of several indexes
        # that all exist already (every restart of a service), closing the connection.
        for index in spec.indexes:
            await db[spec.collection].create_indexes([index])
