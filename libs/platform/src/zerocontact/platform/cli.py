"""The ``zerocontact`` command line (``[project.scripts]`` of zerocontact-platform).

The platform's own groups: ``topics`` applies the topic catalog to a broker, ``dlq`` replays
dead letters, ``kafka users`` gives a team a SCRAM user and least-privilege ACLs, ``kafka lag-exporter``
serves consumer-group lag to Prometheus. Each installed service adds its group through the ``zerocontact.cli`` entry-point
group (``payroll = "zerocontact.payroll.cli:app"`` in its pyproject), so the platform never
imports a service and an image with one service has only that service's commands.

Settings come from the environment first, then from the local suite ``make up`` runs (its run
directory, see :mod:`.cli_support`); a missing one is one error line naming it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import aclosing
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]
from rich.console import Console
from rich.table import Table

from .access_cli import kafka_app
from .cli_support import (
    connection_or_exit,
    err,
    fail,
    kafka_failures,
    run_admin,
    use_local_suite,
)
from .dlq import NotADeadLetterTopic, ReplayReport, replay_dead_letters
from .lag_cli import lag_exporter
from .tail import Decoder, StartAt, TopicNotFound, parse_since, render, tail
from .topics import (
    DEFAULT_CATALOG,
    CatalogError,
    EnsureReport,
    TopicCatalog,
    TopicCreationError,
    TopicState,
    ensure_topics,
    inspect_topics,
    load_catalog,
)

__all__ = ["app", "dlq_app", "main", "topics_app"]

app = typer.Typer(
    name="zerocontact",
    help="zerocontact developer and operator commands.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(
    help="Kafka topics from the catalog (proto/topics.toml).", no_args_is_help=True
)
app.add_typer(topics_app, name="topics")
dlq_app = typer.Typer(help="Dead-letter topics (<topic>.dlq).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(kafka_app, name="kafka")
kafka_app.command("lag-exporter")(lag_exporter)

# Piped output (CI logs, scripts) is not cut at rich's default 80 columns; errors stay one line.
out = Console(width=None if sys.stdout.isatty() else 200)

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers, host:port[,host:port].",
    ),
]
CatalogPath = Annotated[
    Path,
    typer.Option(
        "--catalog",
        envvar="ZC_TOPIC_CATALOG",
        help="Topic catalog file.",
        exists=True,
        dir_okay=False,
    ),
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Seconds to wait for the broker to answer."),
]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _load(path: Path) -> TopicCatalog:
    try:
        return load_catalog(path)
    except CatalogError as exc:
        fail(str(exc))


def _duration(ms: int) -> str:
    if ms == -1:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@topics_app.command("create")
def create(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    catalog: CatalogPath = DEFAULT_CATALOG,
    replication_factor: Annotated[
        int, typer.Option(min=1, help="Replication factor of new topics.")
    ] = 1,
    timeout: Timeout = 10.0,
) -> None:
    """Create the catalog's missing topics; report existing ones that differ (exit 1)."""
    topics = _load(catalog)

    async def work(admin: AIOKafkaAdminClient) -> EnsureReport:
        return await ensure_topics(admin, topics, replication_factor=replication_factor)

    try:
        report = run_admin(connection_or_exit(bootstrap), timeout, work)
    except TopicCreationError as exc:
        fail(str(exc))
    table = Table("topic", "partitions", "cleanup", "retention", "result", title=bootstrap)
    drifted = {d.topic for d in report.partition_drift} | {d.topic for d in report.config_drift}
    for spec in topics:
        if spec.name in report.created:
            result = "[green]created[/]"
        elif spec.name in drifted:
            result = "[yellow]differs[/]"
        else:
            result = "exists"
        table.add_row(
            spec.name,
            str(spec.partitions),
            spec.cleanup_policy,
            _duration(spec.retention_ms),
            result,
        )
    out.print(table)
    for p in report.partition_drift:
        err.print(
            f"[yellow]{p.topic}: {p.actual} partitions on the broker, catalog says {p.expected}"
        )
    for c in report.config_drift:
        err.print(
            f"[yellow]{c.topic}: {c.config}={c.actual} on the broker, catalog says {c.expected}"
        )
    if not report.in_sync:
        raise typer.Exit(1)


@topics_app.command("list")
def list_(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    catalog: CatalogPath = DEFAULT_CATALOG,
    timeout: Timeout = 10.0,
    offline: Annotated[
        bool, typer.Option("--offline", help="Show the catalog only; do not ask the broker.")
    ] = False,
) -> None:
    """Show the catalog and, unless --offline, each topic's state on the broker."""
    topics = _load(catalog)
    states: dict[str, TopicState] = {}
    if not offline:

        async def work(admin: AIOKafkaAdminClient) -> dict[str, TopicState]:
            return await inspect_topics(admin, topics.names)

        states = run_admin(connection_or_exit(bootstrap), timeout, work)
    table = Table(
        "topic", "key", "value", "partitions", "cleanup", "retention", "owner", "dlq",
        title="catalog" if offline else f"catalog vs {bootstrap}",
    )  # fmt: skip
    if not offline:
        table.add_column("on broker")
    for spec in topics:
        row = [
            spec.name,
            spec.key,
            spec.value,
            str(spec.partitions),
            spec.cleanup_policy,
            _duration(spec.retention_ms),
            spec.owner,
            "yes" if spec.dlq else "",
        ]
        if not offline:
            state = states.get(spec.name)
            if state is None:
                row.append("[red]missing[/]")
            elif state.partitions != spec.partitions or state.configs != spec.configs:
                row.append(f"[yellow]differs ({state.partitions} partitions)[/]")
            else:
                row.append("[green]ok[/]")
        table.add_row(*row)
    out.print(table)


@topics_app.command("tail")
def tail_(
    topic: Annotated[str, typer.Argument(help="The topic, e.g. loan.events.v1 or its .dlq.")],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    catalog: CatalogPath = DEFAULT_CATALOG,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at each partition's oldest record.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="Start at records this recent: 30s, 10m, 2h, 1d."),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Only records with this key.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new records (Ctrl-C ends).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of blocks.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Show at most this many records.")
    ] = None,
    decode_as: Annotated[
        str | None,
        typer.Option(
            "--decode-as",
            help="Decode with this catalog topic's row (a mirror or test topic not in it).",
        ),
    ] = None,
    timeout: Timeout = 10.0,
) -> None:
    """Show a topic's records decoded, personal fields masked; never moves any offsets.

    Without --from-beginning or --since it starts at the last 10 records of each partition;
    without --follow it stops at the end offsets seen when it started.
    """
    if from_beginning and since is not None:
        fail("--from-beginning and --since exclude each other")
    start = StartAt(from_beginning=from_beginning)
    if since is not None:
        try:
            start = StartAt(since=datetime.now(UTC) - parse_since(since))
        except ValueError as exc:
            fail(f"--since: {exc}")
    topics = _load(catalog)
    try:
        decoder = Decoder(topics, {topic: decode_as} if decode_as else None)
    except KeyError:
        fail(f"--decode-as: {decode_as!r} is not a topic of the catalog")

    async def main() -> int:
        shown = 0
        records = tail(
            connection_or_exit(bootstrap), topic, decoder, start=start, key=key, follow=follow, limit=limit,
            connect_timeout_s=timeout,
        )  # fmt: skip
        async with aclosing(records):
            async for record in records:
                shown += 1
                if as_json:
                    print(json.dumps(record.to_json(), ensure_ascii=False), flush=True)
                else:
                    out.print(render(record))
        return shown

    with kafka_failures(bootstrap, timeout):
        try:
            shown = asyncio.run(main())
        except KeyboardInterrupt:
            return  # --follow ends with Ctrl-C
        except BrokenPipeError:  # an OSError: handled here, before kafka_failures sees it
            # `... --json | head`: the reader has what it wanted. Python's exit flush of stdout
            # would fail again, so stdout goes to /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        except TopicNotFound:
            fail(f"topic {topic} does not exist on Kafka at {bootstrap}")
    if not as_json:
        err.print(f"{shown} record{'' if shown == 1 else 's'}", highlight=False)


@dlq_app.command("replay")
def replay(
    topic: Annotated[str, typer.Argument(help="The dead-letter topic, e.g. loan.events.v1.dlq.")],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Replay at most this many records.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be replayed; publish nothing.")
    ] = False,
    timeout: Timeout = 10.0,
    default_header: Annotated[
        list[str] | None,
        typer.Option(
            "--default-header",
            help="NAME=VALUE added to each replayed record that lacks NAME (repeatable), "
            "e.g. ce_specversion=1.0 for records their producer sent without it.",
        ),
    ] = None,
) -> None:
    """Republish a DLQ's records (not replayed before) to their original topics."""

    connection = connection_or_exit(bootstrap)
    defaults: dict[str, str] = {}
    for item in default_header or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or name.startswith("dlq_"):
            fail(f"--default-header takes NAME=VALUE (not a dlq_ header), not {item!r}")
        defaults[name.strip()] = value

    async def work(_: AIOKafkaAdminClient) -> ReplayReport:
        return await replay_dead_letters(
            bootstrap=connection,
            dlq_topic=topic,
            limit=limit,
            dry_run=dry_run,
            default_headers=defaults,
        )

    try:
        report = run_admin(connection, timeout, work)
    except NotADeadLetterTopic as exc:
        fail(str(exc))
    verb = "would replay" if dry_run else "replayed"
    out.print(f"{topic}: {verb} {report.total} records", highlight=False)
    if report.unrecoverable:
        err.print(
            f"{topic}: {report.unrecoverable} dead letters went without their value and their"
            " original record is gone (retention): skipped",
            highlight=False,
        )
    if report.replayed:
        table = Table("to topic", "records")
        for target, count in sorted(report.replayed.items()):
            table.add_row(target, str(count))
        out.print(table)


def add_service_commands() -> None:
    """Add every installed service's command group (entry points ``zerocontact.cli``)."""
    known = {group.name for group in app.registered_groups}
    for entry in sorted(entry_points(group="zerocontact.cli"), key=lambda e: e.name):
        if entry.name not in known:
            app.add_typer(entry.load(), name=entry.name)
            known.add(entry.name)


def main() -> None:
    """The ``zerocontact`` console script."""
    # Unset engine addresses (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI) come from the running
    # local suite, if one was started here; the environment wins (cli_support).
    use_local_suite()
    add_service_commands()
    app()


if __name__ == "__main__":
    main()
