"""``zerocontact kafka users``: a team's SCRAM user and its least-privilege ACLs.

The admin connection is the one a service would make: ``KAFKA_BOOTSTRAP_SERVERS`` (or
``--bootstrap``) plus ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_CAFILE``
for a super user on a secured listener. See docs/runbook.md ("Give a team access to Kafka").
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .cli_support import connection_or_exit, fail, run_admin
from .kafka.access import AccessError, TeamAccess, create_team_user, delete_team_user, new_password
from .kafka.connection import KafkaConnection

__all__ = ["kafka_app"]

kafka_app = typer.Typer(
    help="Kafka access control (SCRAM users, ACLs) and consumer-group lag.", no_args_is_help=True
)
users_app = typer.Typer(help="A team's SCRAM user and its ACLs.", no_args_is_help=True)
kafka_app.add_typer(users_app, name="users")

# soft_wrap: a password or a path is never broken over two lines.
out = Console(highlight=False, soft_wrap=True)
T = TypeVar("T")

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers; TLS and SASL come from KAFKA_SECURITY_PROTOCOL etc.",
    ),
]
Timeout = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the broker.")
]
Mechanism = Annotated[str, typer.Option("--mechanism", help="SCRAM-SHA-512 or SCRAM-SHA-256.")]


def _run(connection: KafkaConnection, timeout: float, work: Callable[[Any], Awaitable[T]]) -> T:
    try:
        return run_admin(connection, timeout, work)
    except AccessError as exc:
        fail(str(exc))


def _topics(values: list[str]) -> tuple[str, ...]:
    """``--read a --read b`` and ``--read a,b`` alike."""
    return tuple(dict.fromkeys(t.strip() for v in values for t in v.split(",") if t.strip()))


@users_app.command("create")
def create(
    team: Annotated[str, typer.Argument(help="The team, i.e. the SCRAM user name.")],
    read: Annotated[
        list[str], typer.Option("--read", metavar="TOPIC", help="A topic to consume (repeat).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    write: Annotated[
        list[str], typer.Option("--write", metavar="TOPIC", help="A topic to produce to (repeat).")
    ] = [],  # noqa: B006
    group_prefix: Annotated[
        str | None,
        typer.Option("--group-prefix", help="Consumer groups the team may use (default TEAM.)."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file", help="Write the password here (mode 0600) instead of printing it."
        ),
    ] = None,
    bootstrap: Bootstrap = "127.0.0.1:9092",
    mechanism: Mechanism = "SCRAM-SHA-512",
    timeout: Timeout = 10.0,
) -> None:
    """Create (or reset) TEAM's SCRAM user with a new password and least-privilege ACLs."""
    try:
        access = TeamAccess(team, _topics(read), _topics(write), group_prefix)
    except AccessError as exc:
        fail(str(exc))
    password = new_password()
    acls = _run(
        connection_or_exit(bootstrap),
        timeout,
        lambda admin: create_team_user(admin, access, password, mechanism),
    )
    table = Table("principal", "operation", "resource", "pattern")
    for acl in acls:
        table.add_row(
            access.principal,
            acl.operation.name,
            f"{acl.resource_type.name.lower()} {acl.resource_name}",
            acl.pattern_type.name.lower(),
        )
    out.print(table)
    if password_file is not None:
        password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        out.print(f"user {team} ({mechanism}): password written to {password_file}")
    else:
        out.print(f"user {team} ({mechanism}) password, shown once: {password}")


@users_app.command("delete")
def delete(
    team: Annotated[str, typer.Argument(help="The team (SCRAM user) to remove.")],
    bootstrap: Bootstrap = "127.0.0.1:9092",
    mechanism: Mechanism = "SCRAM-SHA-512",
    timeout: Timeout = 10.0,
) -> None:
    """Remove every ACL of TEAM and its SCRAM credential."""
    removed = _run(
        connection_or_exit(bootstrap),
        timeout,
        lambda admin: delete_team_user(admin, team, mechanism),
    )
    out.print(f"user {team}: {removed} ACLs and its {mechanism} credential removed")
