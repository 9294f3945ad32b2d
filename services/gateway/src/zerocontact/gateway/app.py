"""Wiring: the grpc.aio server over mTLS with health, reflection, size limits and the gateway's
stores, backends, event hub, audit sink and idempotency purge job; beside it, a plain HTTP app
for the operational routes (not :func:`zerocontact.platform.runtime.service_app`: the partner
API is the gRPC server, the HTTP app only answers probes and scrapes).

Run: ``python -m zerocontact.gateway`` (settings ``ZC_GATEWAY_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from pymongo import AsyncMongoClient

from zerocontact.gateway.audit import AuditSink
from zerocontact.gateway.backends import Backends
from zerocontact.gateway.dead_letters import DeadLetters
from zerocontact.gateway.guard import Gateway
from zerocontact.gateway.guard.ratelimit import COLLECTION as RATE_WINDOWS
from zerocontact.gateway.guard.ratelimit import SharedRateLimiter
from zerocontact.gateway.readmodel import ReadModel
from zerocontact.gateway.resume import ResumeTokens
from zerocontact.gateway.servicers import (
    AssistantServicer,
    IdentityServicer,
    LoanServicer,
    PayrollServicer,
    SignalServicer,
)
from zerocontact.gateway.servicers.webhooks import WebhookServicer
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.gateway.store import IdempotencyStore, OwnershipStore, PartnerStore, prepare
from zerocontact.gateway.tracing import ServerSpans
from zerocontact.gateway.v1 import (
    assistant_pb2,
    assistant_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    loan_pb2,
    loan_pb2_grpc,
    payroll_pb2,
    payroll_pb2_grpc,
    signals_pb2,
    signals_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from zerocontact.gateway.watch import EventHub
from zerocontact.gateway.webhooks.dispatcher import WebhookDispatcher
from zerocontact.gateway.webhooks.store import INDEXES as WEBHOOK_INDEXES
from zerocontact.gateway.webhooks.store import WebhookStore
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.http import install_operational_routes
from zerocontact.platform.jobs import PeriodicJob
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.metrics import ENGINE_POLL_S, engine_poll
from zerocontact.platform.mongo import create_mongo_client, ensure_indexes, mongo_ready
from zerocontact.platform.telemetry import shutdown_tracing

log = logging.getLogger(__name__)

SERVICE_NAMES = [
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
    loan_pb2.DESCRIPTOR.services_by_name["LoanService"].full_name,
    payroll_pb2.DESCRIPTOR.services_by_name["PayrollService"].full_name,
    signals_pb2.DESCRIPTOR.services_by_name["SignalService"].full_name,
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name,
]


class ReflectionPool:
    """The default descriptor pool for server reflection, also resolving a method's full name.

    The reflection protocol's ``file_containing_symbol`` takes ``<package>.<Service>.<Method>``
    too (ghz asks for the method, grpcurl for the service); the upb pool only knows services,
    so without this ghz fails with "Symbol not found".
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def FindFileContainingSymbol(self, name: str) -> FileDescriptor:  # the pool API's name
        """The file defining ``name`` (a message, enum, service or a service's method)."""
        try:
            found: FileDescriptor = self._pool.FindFileContainingSymbol(name)
            return found
        except KeyError:
            service_name, _, method = name.rpartition(".")
            if not service_name:
                raise
            service = self._pool.FindServiceByName(service_name)  # KeyError when none
            if method not in service.methods_by_name:
                raise
            method_file: FileDescriptor = service.file
            return method_file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials:
    """TLS with required, verified client certificates from the partners' CA."""
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())],
        root_certificates=Path(settings.client_ca_file).read_bytes(),
        require_client_auth=True,
    )


@dataclass
class RunningGateway:
    """A started gateway."""

    server: grpc.aio.Server
    port: int
    gateway: Gateway


class OperationalHttp:
    """/healthz, /readyz (MongoDB answers) and /metrics on plain HTTP, as every service has."""

    def __init__(self, settings: GatewaySettings, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
        ops = FastAPI(title="zerocontact gateway (operational)", docs_url=None, openapi_url=None)

        async def mongodb() -> bool:
            return await mongo_ready(mongo, settings.readiness_timeout_s)

        install_operational_routes(ops, checks={"mongodb": mongodb})
        # zc_engine_up kept current without probes (/readyz records it too)
        poll = engine_poll({"mongodb": mongodb}, settings.readiness_timeout_s)
        self._engines = PeriodicJob("engine-up", ENGINE_POLL_S, poll)
        self._server = uvicorn.Server(
            uvicorn.Config(
                ops,
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve in the background: probes and scrapers find it once it listens."""
        self._task = asyncio.create_task(self._server.serve(), name="gateway-operational-http")
        self._engines.start()

    async def stop(self) -> None:
        """Stop listening."""
        await self._engines.stop()
        if self._task is not None:
            self._server.should_exit = True
            await self._task


def purge_job(gateway: Gateway, settings: GatewaySettings) -> PeriodicJob:
    """Deletes idempotency records older than the TTL, every purge interval (first after one)."""

    async def purge() -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.idempotency_ttl_s)
        purged = await gateway.idempotency.purge(cutoff)
        if purged:
            log.info("purged %d idempotency records", purged)

    interval = settings.idempotency_purge_interval_s
    return PeriodicJob("gateway-idempotency-purge", interval, purge, first_delay_s=interval)


def rate_windows_purge_job(limiter: SharedRateLimiter) -> PeriodicJob:
    """Deletes the shared rate limit's ended windows every minute (no TTL index on FerretDB)."""

    async def purge() -> None:
        await limiter.purge(older_than_s=60.0)

    return PeriodicJob("gateway-rate-windows-purge", 60.0, purge, first_delay_s=60.0)


def grpc_server(
    settings: GatewaySettings,
    gateway: Gateway,
    webhooks: WebhookServicer | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The partner services, health and reflection on one server (not started, no port yet); a
    SERVER span per partner call unless tracing is off (OTEL_SDK_DISABLED)."""
    server = grpc.aio.server(
        interceptors=None if settings.otel_sdk_disabled else [ServerSpans()],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_concurrent_streams", 1000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(gateway), server)
    loan_pb2_grpc.add_LoanServiceServicer_to_server(LoanServicer(gateway), server)
    payroll_pb2_grpc.add_PayrollServiceServicer_to_server(PayrollServicer(gateway), server)
    signals_pb2_grpc.add_SignalServiceServicer_to_server(SignalServicer(gateway), server)
    assistant_pb2_grpc.add_AssistantServiceServicer_to_server(AssistantServicer(gateway), server)
    if webhooks is not None:
        webhooks_pb2_grpc.add_WebhookServiceServicer_to_server(webhooks, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME],
        server,
        pool=ReflectionPool(),
    )
    return server, health_servicer


@contextlib.asynccontextmanager
async def running(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    """Start the gateway (port 0 picks a free one) and stop it when the block ends.

    Everything started is registered on one exit stack as it starts, so the end of the block
    (or a failure half-way through start-up) stops it in reverse: health NOT_SERVING first,
    then the operational HTTP, the gRPC server (in-flight calls get a 5 s grace), the purge
    job, the audit sink (what is queued is published), the event hub, the dead-letter
    producer, the backends' pools and MongoDB last; the spans still buffered are exported after
    all that.
    """
    settings.configure_tracing()  # once per process (a second call keeps the first provider)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(shutdown_tracing)
        mongo = create_mongo_client(settings.mongodb_uri, app_name="gateway")
        stack.push_async_callback(mongo.close)
        db = mongo[settings.mongodb_database]
        await prepare(db)
        await ensure_indexes(db, WEBHOOK_INDEXES)
        backends = Backends(
            settings.identity_url, settings.loan_url, settings.payroll_url, settings.assistant_url
        )
        # dead letters of what the watch streams and the webhook dispatcher cannot read
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_connection(), client_id="gateway-dead-letters"
        )
        hub = EventHub(
            settings.kafka_connection(),
            loan_topic=settings.loan_topic,
            payroll_topic=settings.payroll_topic,
            risk_topic=settings.risk_topic,
            tokens=ResumeTokens(settings.credential_pepper.get_secret_value().encode()),
            dead_letters=DeadLetters(publisher, settings.watch_reader),
        )
        audit = AuditSink(settings.kafka_connection(), settings.audit_topic)
        views = ReadModel(max_age_s=settings.read_model_max_age_s)
        hub.on_change(views.changed)
        gateway = Gateway(
            settings,
            partners=PartnerStore(db, settings.credential_pepper.get_secret_value().encode()),
            owners=OwnershipStore(db),
            idempotency=IdempotencyStore(
                db,
                settings.field_cipher(),
                in_flight_timeout_s=settings.idempotency_in_flight_timeout_s,
            ),
            backends=backends,
            hub=hub,
            audit=audit,
            shared_limiter=SharedRateLimiter(
                db[RATE_WINDOWS],
                window_s=settings.rate_limit_window_s,
                timeout_s=settings.rate_limit_timeout_s,
                max_chunk=settings.rate_limit_max_chunk,
            )
            if settings.rate_limit == "shared"
            else None,
            views=views,
            tokens=TokenVerifier.remote(
                settings.jwks_url or f"{settings.identity_url.rstrip('/')}/.well-known/jwks.json",
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            ),
        )
        await backends.start()
        stack.push_async_callback(backends.close)
        await publisher.start()  # connects in the background; stopped after its users
        stack.push_async_callback(publisher.stop)
        for component in (hub, audit):
            await component.start()
            stack.push_async_callback(component.stop)
        purge = purge_job(gateway, settings)
        purge.start()
        stack.push_async_callback(purge.stop)
        if gateway.shared_limiter is not None:
            windows_purge = rate_windows_purge_job(gateway.shared_limiter)
            windows_purge.start()
            stack.push_async_callback(windows_purge.stop)
        webhook_store = WebhookStore(db, settings.field_cipher())
        dispatcher = None
        if settings.webhooks_enabled:
            dispatcher = WebhookDispatcher(
                settings,
                webhook_store,
                gateway.owners,
                DeadLetters(publisher, settings.webhook_consumer_group),
            )
            await dispatcher.start()
            stack.push_async_callback(dispatcher.stop)
        webhooks = WebhookServicer(gateway, webhook_store, dispatcher)

        server, health_servicer = grpc_server(settings, gateway, webhooks)
        port = server.add_secure_port(
            f"{settings.grpc_host}:{settings.grpc_port}", server_credentials(settings)
        )
        await server.start()
        stack.push_async_callback(server.stop, 5)  # grace for in-flight calls
        if settings.http_port:
            ops = OperationalHttp(settings, mongo)
            await ops.start()
            stack.push_async_callback(ops.stop)

        async def announce(status: int) -> None:
            for name in ["", *SERVICE_NAMES]:
                await health_servicer.set(name, status)

        await announce(health_pb2.HealthCheckResponse.SERVING)
        stack.push_async_callback(announce, health_pb2.HealthCheckResponse.NOT_SERVING)
        yield RunningGateway(server, port, gateway)


async def serve(settings: GatewaySettings) -> None:
    """Run until terminated."""
    async with running(settings) as gw:
        log.info("gateway listening on %s:%d", settings.grpc_host, gw.port)
        await gw.server.wait_for_termination()
