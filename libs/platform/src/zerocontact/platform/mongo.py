"""MongoDB through PyMongo's asyncio API: the client, readiness and start-up indexes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymongo
from prometheus_client import Counter
from pymongo import AsyncMongoClient, IndexModel, monitoring
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]

# What a unit of work costs the database, in commands (bench/loan_310.py reads it per loan).
COMMANDS = Counter(
    "zc_mongodb_commands_total",
    "MongoDB commands this process sent, by command and collection",
    ["command", "collection"],
)


class CommandCounter(monitoring.CommandListener):
    """Counts every command sent (:data:`COMMANDS`); label children cached per pair."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], Any] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get(name)  # the collection, for the CRUD commands
        key = (name, target if isinstance(target, str) else "")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = COMMANDS.labels(*key)
        child.inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


_COUNTER = CommandCounter()


def create_mongo_client(uri: str, *, app_name: str) -> AsyncMongoClient[Document]:
    """A client for the service's lifespan. Nothing connects until the first operation."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=3_000,
        event_listeners=[_COUNTER],
    )


# Pings whose caller stopped waiting: held until they end by PyMongo's own deadline.
_PINGS: set[asyncio.Task[bool]] = set()


async def mongo_ready(client: AsyncMongoClient[Document], within_s: float = 2.0) -> bool:
    """True when the server answers ``ping`` within ``within_s``.

    The deadline is PyMongo's own (``pymongo.timeout``), a little inside the caller's, so a slow
    ping ends as PyMongo's timeout and its connection goes back to the pool or is closed. The
    ping runs in a task the caller's cancellation does not reach (``asyncio.shield``): a ping
    cancelled from outside mid-handshake left a socket no one closed, a ResourceWarning that
    failed unrelated tests in loaded runs. A caller whose own deadline fires first (a loop
    that lags more than the margin) stops waiting, and the ping still ends within PyMongo's.
    """
    ping = asyncio.create_task(_ping(client, max(within_s - 0.25, within_s / 2)))
    _PINGS.add(ping)
    ping.add_done_callback(_PINGS.discard)
    return await asyncio.shield(ping)


async def _ping(client: AsyncMongoClient[Document], within_s: float) -> bool:
    try:
        with pymongo.timeout(within_s):
            await client.admin.command("ping")
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
