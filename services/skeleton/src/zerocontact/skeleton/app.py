"""Wiring of the walking skeleton's two apps; the only place clients are created.

Run with ``uvicorn --factory zerocontact.skeleton.app:create_accounts_app`` and
``uvicorn --factory zerocontact.skeleton.app:create_projection_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from zerocontact.platform.http import engine_checks, install_operational_routes
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.logging import configure_logging
from zerocontact.platform.mongo import create_mongo_client
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.pii import FieldCipher
from zerocontact.skeleton.api import accounts_router, balances_router
from zerocontact.skeleton.consumers import BALANCES, apply_skeleton_event
from zerocontact.skeleton.repository import AccountRepository
from zerocontact.skeleton.settings import AccountsSettings, ProjectionSettings


@dataclass
class AccountsDeps:
    settings: AccountsSettings
    mongo: AsyncMongoClient[dict[str, Any]]
    repo: AccountRepository
    cipher: FieldCipher
    publisher: EventPublisher
    relay: OutboxRelay


@dataclass
class ProjectionDeps:
    settings: ProjectionSettings
    mongo: AsyncMongoClient[dict[str, Any]]
    balances: AsyncCollection[dict[str, Any]]
    publisher: EventPublisher
    consumer: ConsumerRunner


def create_accounts_app(settings: AccountsSettings | None = None) -> FastAPI:
    """The writer: accounts and deposits, each write with its outbox event."""
    settings = settings or AccountsSettings()  # type: ignore[call-arg]  # keys come from the env
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings.mongodb_uri, app_name=settings.service_name)
        repo = AccountRepository(mongo[settings.mongodb_database])
        await repo.create_indexes()
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers, client_id=settings.service_name
        )
        await publisher.start()
        relay = OutboxRelay(
            publisher=publisher,
            collections=[repo.collection],
            sweep_interval_s=settings.outbox_sweep_interval_s,
        )
        await relay.start()
        cipher = settings.field_cipher()
        app.state.deps = AccountsDeps(settings, mongo, repo, cipher, publisher, relay)
        try:
            yield
        finally:
            await relay.stop()
            await publisher.stop()
            await mongo.close()

    app = FastAPI(title="zerocontact skeleton accounts", lifespan=lifespan)
    app.include_router(accounts_router)

    checks = engine_checks(
        publisher=lambda: app.state.deps.publisher,
        mongo=lambda: app.state.deps.mongo,
        within_s=settings.readiness_timeout_s,
    )

    install_operational_routes(app, checks=checks, timeout_s=settings.readiness_timeout_s)
    return app


def create_projection_app(settings: ProjectionSettings | None = None) -> FastAPI:
    """The consumer: balances projected from the account events."""
    settings = settings or ProjectionSettings()
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings.mongodb_uri, app_name=settings.service_name)
        balances = mongo[settings.mongodb_database][BALANCES]
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers, client_id=settings.service_name
        )
        await publisher.start()

        async def handle(consumed: ConsumedEvent) -> None:
            await apply_skeleton_event(consumed, balances=balances)

        consumer = ConsumerRunner(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[settings.topic],
            group_id=settings.consumer_group,
            handler=handle,
            publisher=publisher,
        )
        await consumer.start()
        app.state.deps = ProjectionDeps(settings, mongo, balances, publisher, consumer)
        try:
            yield
        finally:
            await consumer.stop()
            await publisher.stop()
            await mongo.close()

    app = FastAPI(title="zerocontact skeleton projection", lifespan=lifespan)
    app.include_router(balances_router)

    checks = engine_checks(
        publisher=lambda: app.state.deps.publisher,
        mongo=lambda: app.state.deps.mongo,
        consumer=lambda: app.state.deps.consumer,
        within_s=settings.readiness_timeout_s,
    )

    install_operational_routes(app, checks=checks, timeout_s=settings.readiness_timeout_s)
    return app
