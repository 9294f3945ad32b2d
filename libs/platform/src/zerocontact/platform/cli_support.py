"""What every ``zerocontact`` command shares: the error console, the one-line failure and
the translation of broker trouble into it (used by :mod:`.cli` and :mod:`.access_cli`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    KafkaConnectionError,
    KafkaError,
)
from rich.console import Console

from .kafka.connection import KafkaConnection, KafkaSettingsError
from .settings import kafka_connection_for

__all__ = ["connection_or_exit", "err", "fail", "kafka_failures", "run_admin"]

err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one error line and end the command with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def connection_or_exit(bootstrap: str) -> KafkaConnection:
    """``bootstrap`` with the environment's Kafka security settings; a gap is one line, exit 2."""
    try:
        return kafka_connection_for(bootstrap)
    except KafkaSettingsError as exc:
        fail(str(exc))


@contextmanager
def kafka_failures(where: str, timeout: float) -> Iterator[None]:
    """Broker trouble inside the block becomes one error line naming ``where``, exit 2."""
    # aiokafka logs each failed connection attempt; the single error line says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        yield
    except TimeoutError:
        fail(f"Kafka at {where} did not answer within {timeout:g}s")
    except KafkaConnectionError:
        fail(f"cannot reach Kafka at {where}: no broker accepted the connection")
    except (KafkaError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"Kafka at {where} failed: {reason}")


def run_admin(
    connection: KafkaConnection,
    timeout: float,
    work: Callable[[AIOKafkaAdminClient], Awaitable[T]],
) -> T:
    """Run ``work`` with a connected admin client; broker trouble becomes one line, exit 2."""

    async def main() -> T:
        admin = AIOKafkaAdminClient(
            **connection.client_kwargs(),
            client_id="zerocontact-cli",
            request_timeout_ms=max(int(timeout * 1000), 1000),
        )
        try:
            async with asyncio.timeout(timeout):
                await admin.start()
            # The whole command, not just the connection, is bounded: a broker that accepts
            # connections but never answers must not hang a deploy script.
            async with asyncio.timeout(timeout * 3):
                return await work(admin)
        finally:
            await admin.close()

    with kafka_failures(connection.bootstrap_servers, timeout):
        return asyncio.run(main())
