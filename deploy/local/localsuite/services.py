"""The programs of deploy/local/services.toml, its setup commands and their local secrets."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field

from .common import EngineError
from .layout import ROOT, SERVICES_FILE, Layout

# What the services run with, for the ``zerocontact`` command (zerocontact.platform.cli_support
# reads it when its own environment lacks a setting): run/suite-env.json.
SUITE_ENV = "suite-env.json"


@dataclass(frozen=True)
class Service:
    """One program from deploy/local/services.toml."""

    name: str
    command: list[str]
    port: int | None = None
    health: str | None = None
    metrics: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


HOME_PLACEHOLDER = "{home}"


def expand(value: str, layout: Layout) -> str:
    """``{home}`` in a command or environment value of services.toml: this ZC_LOCAL_HOME, so
    what setup writes there (the gateway's development certificates) stays with this cache."""
    return value.replace(HOME_PLACEHOLDER, str(layout.home))


def load_setup() -> list[list[str]]:
    """Commands run once the engines answer and before any service starts (e.g. topics)."""
    if not SERVICES_FILE.exists():
        return []
    raw = tomllib.loads(SERVICES_FILE.read_text())
    commands = []
    for command in raw.get("setup", []):
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise EngineError(f"{SERVICES_FILE}: every setup entry must be a list of strings")
        commands.append([sys.executable, *command[1:]] if command[0] == "python" else command)
    return commands


def local_secrets(layout: Layout, names: set[str]) -> dict[str, str]:
    """Random 32-byte keys for local runs, made once and kept in the cache (mode 0600).

    Services have no default keys (a deployment without its secrets must not start); on a
    developer's machine these stand in for the Kubernetes Secret.
    """
    path = layout.run / "local-secrets.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = names - known.keys()
    if missing:
        for name in sorted(missing):
            known[name] = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    return {name: known[name] for name in names}


def load_services() -> list[Service]:
    if not SERVICES_FILE.exists():
        return []
    try:
        raw = tomllib.loads(SERVICES_FILE.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EngineError(f"{SERVICES_FILE} is not valid TOML ({exc}): fix it") from exc
    services = []
    for entry in raw.get("service", []):
        name, command = entry.get("name"), entry.get("command")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise EngineError(f"{SERVICES_FILE}: service name {name!r} must match [a-z][a-z0-9_-]*")
        if name in {"kafka", "ferretdb"}:
            raise EngineError(f"{SERVICES_FILE}: service name {name!r} is reserved for an engine")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(part, str) for part in command)
        ):
            raise EngineError(f"{SERVICES_FILE}: service {name}: command must be a list of strings")
        if command[0] == "python":
            command = [sys.executable, *command[1:]]
        env = {str(k): str(v) for k, v in entry.get("env", {}).items()}
        port, health, metrics = entry.get("port"), entry.get("health"), entry.get("metrics")
        secrets = [str(name) for name in entry.get("secrets", [])]
        services.append(Service(name, command, port, health, metrics, env, secrets))
    return services


def record_environment(layout: Layout, engines: dict[str, str], services: list[Service]) -> None:
    """run/suite-env.json: the engines' addresses and each service's environment, its secrets
    by name only (their values stay in local-secrets.json). Relative ``*_FILE`` paths are made
    absolute (the services run in the repository root); ``{home}`` is this cache."""

    def value(key: str, raw: str) -> str:
        raw = raw.replace("{home}", str(layout.home))
        return str(ROOT / raw) if key.endswith("_FILE") and not os.path.isabs(raw) else raw

    doc = {
        "engines": engines,
        "services": {
            service.name: {
                "env": {key: value(key, raw) for key, raw in service.env.items()},
                "secrets": service.secrets,
            }
            for service in services
        },
    }
    path = layout.run / SUITE_ENV
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SUITE_ENV}.tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
