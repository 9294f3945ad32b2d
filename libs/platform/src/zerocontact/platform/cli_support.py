"""What every ``zerocontact`` command shares: the error console, the one-line failure and
the translation of broker trouble into it (used by :mod:`.cli` and :mod:`.access_cli`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    KafkaConnectionError,
    KafkaError,
)
from rich.console import Console

from .kafka.connection import KafkaConnection, KafkaSettingsError
from .settings import kafka_connection_for

__all__ = ["connection_or_exit", "err", "fail", "kafka_failures"]

err = Console(stderr=True, soft_wrap=True)


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
    try:
        yield
    except TimeoutError:
        fail(f"Kafka at {where} did not answer within {timeout:g}s")
    except KafkaConnectionError:
        fail(f"cannot reach Kafka at {where}: no broker accepted the connection")
    except (KafkaError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"Kafka at {where} failed: {reason}")
