"""Wiring of the assistant service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.assistant.app:create_app --port 8005``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from fastapi import FastAPI

from zerocontact.assistant.api import routers
from zerocontact.assistant.backends import Backends
from zerocontact.assistant.domain.dialogue import DialoguePolicy
from zerocontact.assistant.handlers import AssistantDeps
from zerocontact.assistant.repository import AssistantRepository
from zerocontact.assistant.settings import AssistantSettings
from zerocontact.assistant.understanding import Understander
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.projection import ProjectionWaits
from zerocontact.platform.runtime import Runtime, service_app

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def create_app(
    settings: AssistantSettings | None = None,
    *,
    verifier: TokenVerifier | None = None,
    understander: Understander | None = None,
    backend_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The assistant. ``verifier`` defaults to identity's JWKS over HTTP; ``understander`` to
    :meth:`Understander.load` (the knowledge base and classifier in the repository);
    ``backend_transport`` to the network."""
    settings = settings or AssistantSettings()  # type: ignore[call-arg]  # secrets come from the env
    s = settings

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        began = time.perf_counter()
        loaded = (
            understander if understander is not None else await asyncio.to_thread(Understander.load)
        )
        log.info("understanding loaded", extra={"seconds": round(time.perf_counter() - began, 3)})
        repo = AssistantRepository(runtime.database())
        await runtime.ensure(repo.create_indexes)
        relay = await runtime.start(
            OutboxRelay(
                publisher=await runtime.start_publisher(linger_ms=1),
                collections=repo.outbox_collections(),
                sweep_interval_s=s.outbox_sweep_interval_s,
            )
        )
        backends = await runtime.start(
            Backends(
                identity_url=s.identity_url,
                loan_url=s.loan_url,
                payroll_url=s.payroll_url,
                connect_timeout_s=s.backend_connect_timeout_s,
                timeout_s=s.backend_timeout_s,
                transport=backend_transport,
            )
        )
        app.state.verifier = verifier or TokenVerifier.remote(
            s.jwks_url, issuer=s.jwt_issuer, audience=s.jwt_audience
        )
        app.state.step_up_max_age_s = s.step_up_max_age_s
        app.state.deps = AssistantDeps(
            settings=s,
            repo=repo,
            relay=relay,
            understander=loaded,
            backends=backends,
            cipher=s.field_cipher(),
            waits=ProjectionWaits(within_s=s.max_wait_s, poll_s=s.stream_poll_s),
            policy=DialoguePolicy(
                handoff_below=s.handoff_confidence,
                clarify_below=s.clarify_confidence,
                max_failed_turns=s.max_failed_turns,
                max_slot_asks=s.max_slot_asks,
            ),
        )

    return service_app(
        settings,
        title="zerocontact assistant",
        description="Customer-service assistant: answers from the knowledge base, acts with the "
        "customer's own token, hands off to people. See docs/assistant.md.",
        routers=routers,
        setup=setup,
    )
