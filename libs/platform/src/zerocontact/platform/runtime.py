"""One service runtime: a service declares what it owns, the platform starts and stops it.

A service's ``app.py`` calls :func:`service_app` with its routers and a ``setup`` coroutine.
``setup`` receives a :class:`Runtime` and asks it for what the service owns — the database,
the event publisher, outbox relays, consumers, periodic jobs, anything else with ``start`` and
``stop`` — in the order they must start. Each is registered on one ``AsyncExitStack`` as it
starts, so shutdown (or a failure half-way through start-up) stops them in reverse order.
``/healthz``, ``/readyz`` (Kafka and MongoDB) and ``/metrics`` come with every app, and so do
the HTTP request metrics and ``zc_engine_up`` (kept current by an ``engine-up`` job).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.platform.http import ReadinessCheck, install_operational_routes
from zerocontact.platform.jobs import PeriodicJob
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.logging import configure_logging
from zerocontact.platform.metrics import ENGINE_POLL_S, HttpMetrics, engine_poll
from zerocontact.platform.mongo import Document, create_mongo_client, mongo_ready
from zerocontact.platform.settings import ServiceSettings
from zerocontact.platform.telemetry import instrument_app, shutdown_tracing

__all__ = ["Component", "Runtime", "service_app"]


class Component(Protocol):
    """Anything the runtime can start and stop (relays, rails with a connection, ...)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


C = TypeVar("C", bound=Component)


class Runtime:
    """What one service instance has started, in order; stops it all in reverse."""

    def __init__(self, settings: ServiceSettings, stack: AsyncExitStack) -> None:
        self.settings = settings
        self._stack = stack
        self.mongo: AsyncMongoClient[Document] | None = None
        self.publisher: EventPublisher | None = None
        self.consumers: list[ConsumerRunner] = []
        self.jobs: list[PeriodicJob] = []

    def database(self, name: str | None = None) -> AsyncDatabase[Document]:
        """The service's database (``settings.mongodb_database`` unless named); one client."""
        if self.mongo is None:
            self.mongo = create_mongo_client(
                self.settings.mongodb_uri, app_name=self.settings.service_name
            )
            self._stack.push_async_callback(self.mongo.close)
        return self.mongo[name or self.settings.mongodb_database]

    async def ensure(self, *steps: Callable[[], Awaitable[object]]) -> None:
        """Run set-up steps in order (index creation, opening ledger accounts, ...)."""
        for step in steps:
            await step()

    async def start_publisher(self, *, linger_ms: int | None = None) -> EventPublisher:
        """The service's idempotent event publisher, started."""
        if self.publisher is None:
            options = {} if linger_ms is None else {"linger_ms": linger_ms}
            publisher = EventPublisher(
                bootstrap_servers=self.settings.kafka_connection(),
                client_id=self.settings.service_name,
                **options,
            )
            self.publisher = await self.start(publisher)
        return self.publisher

    async def start(self, component: C) -> C:
        """Start ``component`` now; it is stopped at shutdown, before what started earlier."""
        await component.start()
        self._stack.push_async_callback(component.stop)
        return component

    async def start_consumer(
        self,
        *,
        topics: Sequence[str],
        handler: Callable[[ConsumedEvent], Awaitable[None]],
        group_id: str | None = None,
        **options: Any,
    ) -> ConsumerRunner:
        """A consumer group on ``topics`` (dead letters through the service's publisher)."""
        publisher = await self.start_publisher()
        consumer = ConsumerRunner(
            bootstrap_servers=self.settings.kafka_connection(),
            topics=list(topics),
            group_id=group_id or self.settings.consumer_group,
            handler=handler,
            publisher=publisher,
            client_id=self.settings.service_name,
            **options,
        )
        self.consumers.append(await self.start(consumer))
        return consumer

    def start_job(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], Awaitable[object]],
        *,
        first_delay_s: float = 0.0,
    ) -> PeriodicJob:
        """A periodic job, started now and stopped at shutdown."""
        job = PeriodicJob(name, interval_s, work, first_delay_s=first_delay_s)
        job.start()
        self._stack.push_async_callback(job.stop)
        self.jobs.append(job)
        return job

    def on_stop(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Call ``callback`` at shutdown (in reverse order with everything else)."""
        self._stack.push_async_callback(callback)

    async def kafka_ready(self) -> bool:
        """A broker answers the publisher and every consumer runs."""
        if not all(consumer.running for consumer in self.consumers):
            return False
        return self.publisher is None or await self.publisher.ready(
            self.settings.readiness_timeout_s
        )

    async def mongodb_ready(self) -> bool:
        """The MongoDB server answers (true for a service without a database)."""
        return self.mongo is None or await mongo_ready(
            self.mongo, self.settings.readiness_timeout_s
        )


def service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Iterable[APIRouter],
    setup: Callable[[Runtime, FastAPI], Awaitable[None]],
) -> FastAPI:
    """A FastAPI app whose lifespan runs ``setup`` on a fresh :class:`Runtime`.

    ``setup`` starts what the service owns and puts what its routes need on ``app.state``.
    """
    configure_logging(settings.service_name, settings.log_level)
    settings.configure_tracing()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(shutdown_tracing)  # last out: export the spans of the shutdown too
            runtime = Runtime(settings, stack)
            app.state.runtime = runtime
            await setup(runtime, app)
            poll = engine_poll(readiness, settings.readiness_timeout_s)
            runtime.start_job("engine-up", ENGINE_POLL_S, poll)  # zc_engine_up without probes
            yield

    app = FastAPI(title=title, description=description, lifespan=lifespan)
    for router in routers:
        app.include_router(router)

    def runtime() -> Runtime:
        current: Runtime = app.state.runtime
        return current

    async def kafka() -> bool:
        return await runtime().kafka_ready()

    async def mongodb() -> bool:
        return await runtime().mongodb_ready()

    readiness: dict[str, ReadinessCheck] = {"kafka": kafka, "mongodb": mongodb}
    install_operational_routes(app, checks=readiness, timeout_s=settings.readiness_timeout_s)
    app.add_middleware(HttpMetrics)  # zc_http_requests_total, zc_http_request_duration_seconds
    instrument_app(app)
    return app
