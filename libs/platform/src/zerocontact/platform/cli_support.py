"""What every ``zerocontact`` command shares: the error console, the one-line failure, the
translation of broker trouble into it (used by :mod:`.cli` and :mod:`.access_cli`), and the
settings of a running local suite.

**Settings: the environment first, then the local suite.** A command that needs a service's
settings (``zerocontact gateway partners register`` needs the gateway's) takes each from the
environment when it is set there, and otherwise from the local suite that ``make up`` (or
``deploy/local/engines.py start``) runs: ``<ZC_LOCAL_HOME or <repository>/.cache>/run/``
``suite-env.json`` (the engines' addresses and each service's environment, written at every
start) and ``local-secrets.json`` (the services' local keys). A setting found in neither is
one error line naming its variable, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    KafkaConnectionError,
    KafkaError,
)
from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console

from .kafka.connection import KafkaConnection, KafkaSettingsError
from .settings import kafka_connection_for

__all__ = [
    "LocalSuite",
    "connection_or_exit",
    "err",
    "fail",
    "kafka_failures",
    "local_home",
    "run_admin",
    "settings_or_exit",
    "use_local_suite",
]

err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)

SUITE_ENV = "suite-env.json"
LOCAL_SECRETS = "local-secrets.json"


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


# -- the local suite's settings -----------------------------------------------------------


def _repository() -> Path | None:
    """The checkout this command runs in: the working directory or a parent holding
    ``deploy/local/services.toml``, else the one this module is installed from (editable)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, *Path(__file__).resolve().parents):
        if (folder / "deploy" / "local" / "services.toml").is_file():
            return folder
    return None


def local_home() -> Path | None:
    """The local suite's cache, as ``deploy/local/engines.py`` chooses it: ``ZC_LOCAL_HOME``,
    else ``<repository>/.cache`` (None outside a checkout)."""
    if home := os.environ.get("ZC_LOCAL_HOME"):
        return Path(home).expanduser().resolve()
    root = _repository()
    return root / ".cache" if root else None


@dataclass(frozen=True)
class LocalSuite:
    """What the local suite's services run with (``run/suite-env.json``) and its local keys."""

    run: Path
    engines: dict[str, str]
    services: dict[str, dict[str, str]]  # service -> its environment, its secrets included

    @classmethod
    def find(cls, home: Path | None = None) -> LocalSuite | None:
        """The suite of ``home`` (default :func:`local_home`); None when it never started."""
        home = home or local_home()
        if home is None or not (home / "run" / SUITE_ENV).is_file():
            return None
        run = home / "run"
        try:
            doc = json.loads((run / SUITE_ENV).read_text())
            secrets_file = run / LOCAL_SECRETS
            secrets = json.loads(secrets_file.read_text()) if secrets_file.is_file() else {}
        except (OSError, ValueError) as exc:
            fail(f"cannot read the local suite's settings in {run}: {exc}")
        services = {
            name: {
                **{str(k): str(v) for k, v in entry.get("env", {}).items()},
                **{str(k): str(secrets[k]) for k in entry.get("secrets", []) if k in secrets},
            }
            for name, entry in doc.get("services", {}).items()
        }
        engines = {str(k): str(v) for k, v in doc.get("engines", {}).items()}
        return cls(run, engines, services)

    def environment(self, service: str | None = None) -> dict[str, str]:
        """The engines' addresses, plus ``service``'s environment and keys when named."""
        return {**self.engines, **(self.services.get(service, {}) if service else {})}


def use_local_suite(service: str | None = None) -> LocalSuite | None:
    """Fill the settings this process's environment lacks from the local suite, if any:
    the engines' addresses, and ``service``'s own settings and keys. The environment wins."""
    suite = LocalSuite.find()
    if suite is not None:
        for name, value in suite.environment(service).items():
            os.environ.setdefault(name, value)
    return suite


def _env_names(factory: type[BaseSettings], field: str) -> list[str]:
    """The environment variable(s) that set ``field`` of ``factory``."""
    info = factory.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices if isinstance(choice, str)][:1]
    if isinstance(alias, str):
        return [alias.upper()]
    prefix = str(factory.model_config.get("env_prefix", ""))
    return [f"{prefix}{field}".upper()]


def settings_or_exit(factory: type[S], *, service: str) -> S:
    """``factory()`` from the environment, gaps filled from the local suite's ``service``;
    a missing or invalid setting is one error line naming its variable(s), exit 2."""
    suite = use_local_suite(service)
    try:
        return factory()
    except ValidationError as exc:
        missing: list[str] = []
        invalid: list[str] = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            names = _env_names(factory, field) if field else []
            if error["type"] == "missing":
                missing += names
            else:
                reason = str(error["msg"]).removeprefix("Value error, ")
                invalid.append(f"{'/'.join(names) or factory.__name__}: {reason}")
        where = (
            f"not in the environment nor in the local suite's {suite.run / SUITE_ENV}"
            if suite
            else "set them, or start the local suite (`make up`), whose settings are used "
            f"for unset ones (none has started in {local_home() or 'this directory'})"
        )
        parts = ([f"missing setting(s) {', '.join(missing)}: {where}"] if missing else []) + [
            f"invalid setting {text}" for text in invalid
        ]
        fail("; ".join(parts))
