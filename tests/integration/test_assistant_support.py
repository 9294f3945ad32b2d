"""Shared set-up of the assistant's integration tests (no tests here): the assistant on a real
uvicorn server with the real understanding, its topic read back record by record, and a
customer's conversation as a client sees it."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from tests.integration.catalog_keys import check_record
from tests.integration.harness import Engines, RunningApp, eventually, serve
from zerocontact.assistant.app import create_app
from zerocontact.assistant.settings import AssistantSettings
from zerocontact.assistant.understanding import Understander
from zerocontact.assistant.v1 import events_pb2 as assistant_pb2
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.ids import new_id

OPERATOR_KEY = "assistant-operator-key-for-tests-0123456789"


def random_pii_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def assistant_settings(
    engines: Engines, *, database: str, topic: str, **overrides: Any
) -> AssistantSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": engines.kafka_bootstrap,
        "mongodb_uri": engines.mongodb_uri,
        "mongodb_database": database,
        "events_topic": topic,
        "operator_key": OPERATOR_KEY,
        "pii_key": random_pii_key(),
        "pii_index_key": random_pii_key(),
        "outbox_sweep_interval_s": 0.5,
        "stream_poll_s": 0.2,
    }
    return AssistantSettings(**(values | overrides))


_UNDERSTANDER: Understander | None = None


def understander() -> Understander:
    """The real understanding (the repository's knowledge base and training set), loaded once
    per test process: it is deterministic, and loading costs seconds on a loaded machine."""
    global _UNDERSTANDER
    if _UNDERSTANDER is None:
        _UNDERSTANDER = Understander.load()
    return _UNDERSTANDER


@asynccontextmanager
async def running_assistant(
    settings: AssistantSettings,
    verifier: TokenVerifier,
    *,
    with_understander: Understander | None = None,
) -> AsyncIterator[RunningApp]:
    app = create_app(settings, verifier=verifier, understander=with_understander or understander())
    async with serve(app) as running:
        yield running


@dataclass
class AssistantRecord:
    kind: str
    message: Any
    key: str
    value: bytes


@dataclass
class AssistantTopicReader:
    """Follows the assistant's topic from the beginning; every record is checked against the
    catalog (key, ce_type, ce_dataschema) and kept once per ``ce_id``."""

    bootstrap: str
    topic: str
    records: list[AssistantRecord] = field(default_factory=list)
    off_catalog: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            for batch in (await self._consumer.getmany(timeout_ms=200)).values():
                for r in batch:
                    try:
                        check_record("assistant.events.v1", r.key, r.headers, r.value)
                    except AssertionError as exc:  # a task's failure would go unseen
                        self.off_catalog.append(str(exc))
                    headers = dict(r.headers)
                    if headers["ce_id"] in self._seen:
                        continue
                    self._seen.add(headers["ce_id"])
                    wrapper = assistant_pb2.AssistantEvent.FromString(r.value or b"")
                    kind = wrapper.WhichOneof("event") or ""
                    self.records.append(
                        AssistantRecord(
                            kind, getattr(wrapper, kind), (r.key or b"").decode(), r.value or b""
                        )
                    )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def of(self, event: str, /, **fields: Any) -> list[AssistantRecord]:
        """The records of ``event`` whose message fields equal ``fields``."""
        return [
            r
            for r in self.records
            if r.kind == event and all(getattr(r.message, k) == v for k, v in fields.items())
        ]

    async def wait_for(self, event: str, /, **fields: Any) -> list[AssistantRecord]:
        async def found() -> list[AssistantRecord]:
            return self.of(event, **fields)

        result: list[AssistantRecord] = await eventually(found, within_s=20)
        return result


@dataclass
class Chat:
    """One customer's conversation through the assistant's HTTP API."""

    assistant: RunningApp
    token: str
    conversation_id: str = ""

    def headers(self, token: str | None = None, key: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token}",
            "Idempotency-Key": key or f"k-{new_id()[-20:]}",
        }

    async def start(self) -> dict[str, Any]:
        r = await self.assistant.client.post(
            "/v1/conversations", json={"channel": "app"}, headers=self.headers()
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        self.conversation_id = body["conversation_id"]
        return body

    async def say(self, text: str, *, token: str | None = None, key: str | None = None) -> Any:
        return await self.assistant.client.post(
            f"/v1/conversations/{self.conversation_id}/messages",
            json={"text": text},
            headers=self.headers(token, key),
        )

    async def turn(
        self, text: str, *, token: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        r = await self.say(text, token=token, key=key)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def poll(self, after: int, wait_s: float = 0) -> httpx.Response:
        return await self.assistant.client.get(
            f"/v1/conversations/{self.conversation_id}/messages",
            params={"after": after, "wait_s": wait_s},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=wait_s + 10,
        )


def operator_headers(operator: str, key: str | None = None) -> dict[str, str]:
    return {
        "X-Operator-Key": OPERATOR_KEY,
        "X-Operator-Id": operator,
        "Idempotency-Key": key or f"op-{new_id()[-20:]}",
    }
