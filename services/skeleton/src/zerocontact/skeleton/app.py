"""Wiring of the walking skeleton's two apps; the only place clients are created.

Run with ``uvicorn --factory zerocontact.skeleton.app:create_accounts_app`` and
``uvicorn --factory zerocontact.skeleton.app:create_projection_app``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.collection import AsyncCollection

from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.pii import FieldCipher
from zerocontact.platform.runtime import Runtime, service_app
from zerocontact.skeleton.api import accounts_router, balances_router
from zerocontact.skeleton.consumers import BALANCES, apply_skeleton_event
from zerocontact.skeleton.repository import AccountRepository
from zerocontact.skeleton.settings import AccountsSettings, ProjectionSettings


@dataclass
class AccountsDeps:
    """What the accounts routes use (``app.state.deps``)."""

    settings: AccountsSettings
    repo: AccountRepository
    cipher: FieldCipher
    publisher: EventPublisher
    relay: OutboxRelay


@dataclass
class ProjectionDeps:
    """What the balances route uses (``app.state.deps``)."""

    settings: ProjectionSettings
    balances: AsyncCollection[dict[str, Any]]
    publisher: EventPublisher
    consumer: ConsumerRunner


def create_accounts_app(settings: AccountsSettings | None = None) -> FastAPI:
    """The writer: accounts and deposits, each write with its outbox event."""
    settings = settings or AccountsSettings()  # type: ignore[call-arg]  # keys come from the env

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        repo = AccountRepository(runtime.database())
        await runtime.ensure(repo.create_indexes)
        publisher = await runtime.start_publisher()
        relay = await runtime.start(
            OutboxRelay(
                publisher=publisher,
                collections=[repo.collection],
                sweep_interval_s=settings.outbox_sweep_interval_s,
            )
        )
        app.state.deps = AccountsDeps(settings, repo, settings.field_cipher(), publisher, relay)

    return service_app(
        settings,
        title="zerocontact skeleton accounts",
        description="The walking skeleton's writer: accounts and deposits.",
        routers=[accounts_router],
        setup=setup,
    )


def create_projection_app(settings: ProjectionSettings | None = None) -> FastAPI:
    """The consumer: balances projected from the account events."""
    settings = settings or ProjectionSettings()

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        balances = runtime.database()[BALANCES]

        async def handle(consumed: ConsumedEvent) -> None:
            await apply_skeleton_event(consumed, balances=balances)

        consumer = await runtime.start_consumer(topics=[settings.topic], handler=handle)
        publisher = await runtime.start_publisher()  # started by the consumer (dead letters)
        app.state.deps = ProjectionDeps(settings, balances, publisher, consumer)

    return service_app(
        settings,
        title="zerocontact skeleton projection",
        description="The walking skeleton's reader: balances projected from the account events.",
        routers=[balances_router],
        setup=setup,
    )
