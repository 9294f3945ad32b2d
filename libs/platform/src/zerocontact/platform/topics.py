"""The topic catalog (``proto/topics.toml``): loading, validation and applying it to a broker.

The catalog is the contract of every Kafka topic: its key, its value message (a generated
protobuf wrapper class), partitions, cleanup policy, retention, owner and dead-letter twin.
``load_catalog`` reads and validates it (pure), ``message_class`` resolves a value message to
its generated class, and ``ensure_topics`` creates what is missing on a broker and reports what
differs, without ever changing an existing topic (that is an operator's decision).
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped, unused-ignore]
    ConfigResource,
    ConfigResourceType,
)
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    TopicAlreadyExistsError,
    for_code,
)
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

__all__ = [
    "DEFAULT_CATALOG",
    "RAW_BYTES",
    "CatalogError",
    "ConfigDrift",
    "EnsureReport",
    "PartitionDrift",
    "TopicCatalog",
    "TopicCreationError",
    "TopicSpec",
    "TopicState",
    "ensure_topics",
    "inspect_topics",
    "load_catalog",
    "message_class",
    "parse_catalog",
]

# libs/platform/src/zerocontact/platform/topics.py -> repository root; the catalog sits beside
# the protos it names. An installed platform (an image) is told where it is: ZC_TOPIC_CATALOG.
DEFAULT_CATALOG: Final = Path(__file__).resolve().parents[5] / "proto" / "topics.toml"

RAW_BYTES: Final = "bytes"
"""The ``value`` of a dead-letter topic: the original record's value bytes, untouched."""

CLEANUP_POLICIES: Final = frozenset({"delete", "compact", "compact,delete"})
MANAGED_CONFIGS: Final = ("cleanup.policy", "retention.ms")

TOPIC_NAME: Final = re.compile(
    r"^(?P<domain>[a-z][a-z0-9]*)\.(?P<kind>[a-z][a-z0-9-]*)\.v(?P<version>[1-9][0-9]*)"
    r"(?P<dlq>\.dlq)?$"
)
VALUE_MESSAGE: Final = re.compile(
    r"^zerocontact\.(?P<domain>[a-z][a-z0-9_]*)\.(?P<version>v[1-9][0-9]*)\.[A-Z][A-Za-z0-9.]*$"
)
_KAFKA_LEGAL_NAME: Final = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_REQUIRED: Final = (
    "name",
    "key",
    "value",
    "partitions",
    "cleanup_policy",
    "retention_ms",
    "owner",
    "dlq",
)


class CatalogError(ValueError):
    """The catalog is malformed or inconsistent; ``problems`` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("topic catalog is invalid:\n  " + "\n  ".join(problems))
        self.problems = problems


class TopicCreationError(RuntimeError):
    """The broker refused to create a catalog topic."""

    def __init__(self, topic: str, error: str) -> None:
        super().__init__(f"cannot create topic {topic}: {error}")
        self.topic = topic


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One row of the catalog."""

    name: str
    key: str
    value: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    owner: str
    dlq: bool = False
    dead_letter_of: str | None = None

    @property
    def is_dead_letter(self) -> bool:
        """True for a ``<source>.dlq`` topic."""
        return self.dead_letter_of is not None

    @property
    def dlq_name(self) -> str:
        """The name of this topic's dead-letter twin (whether or not it has one)."""
        return f"{self.name}.dlq"

    @property
    def configs(self) -> dict[str, str]:
        """The topic-level Kafka configs the catalog manages."""
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


def _outlives(dead_letter: TopicSpec, source: TopicSpec) -> bool:
    """A dead-letter topic keeps records at least as long as its source (-1 is forever)."""
    if dead_letter.retention_ms == -1:
        return True
    return source.retention_ms != -1 and dead_letter.retention_ms >= source.retention_ms


def _row_problems(spec: TopicSpec) -> list[str]:
    where = f"topic {spec.name!r}"
    problems = []
    if not _KAFKA_LEGAL_NAME.match(spec.name):
        problems.append(f"{where}: not a legal Kafka topic name")
    if spec.partitions <= 0:
        problems.append(f"{where}: partitions must be > 0, got {spec.partitions}")
    if spec.cleanup_policy not in CLEANUP_POLICIES:
        problems.append(f"{where}: cleanup_policy must be one of {sorted(CLEANUP_POLICIES)}")
    if spec.retention_ms != -1 and spec.retention_ms <= 0:
        problems.append(f"{where}: retention_ms must be > 0 or -1 (forever)")
    if not spec.key.strip() or not spec.owner.strip():
        problems.append(f"{where}: key and owner must not be empty")
    if spec.is_dead_letter:
        if spec.value != RAW_BYTES:
            problems.append(f"{where}: a dead-letter topic's value must be {RAW_BYTES!r}")
        if spec.dlq:
            problems.append(f"{where}: a dead-letter topic has no dead-letter twin of its own")
    elif not VALUE_MESSAGE.match(spec.value):
        problems.append(f"{where}: value must be a full proto name zerocontact.<domain>.vN.<Msg>")
    return problems


def _pairing_problems(by_name: Mapping[str, TopicSpec]) -> list[str]:
    problems = []
    for spec in by_name.values():
        if spec.dead_letter_of is not None:
            source = by_name.get(spec.dead_letter_of)
            if source is None:
                problems.append(f"topic {spec.name!r}: dead_letter_of names no catalog topic")
                continue
            if spec.name != source.dlq_name:
                problems.append(f"topic {spec.name!r}: must be named {source.dlq_name!r}")
            if not source.dlq:
                problems.append(f"topic {source.name!r}: has a dead-letter row but dlq = false")
            if spec.key != source.key:
                problems.append(f"topic {spec.name!r}: key must equal its source's key")
            if not _outlives(spec, source):
                problems.append(f"topic {spec.name!r}: retention must be >= its source's")
        elif spec.dlq:
            twin = by_name.get(spec.dlq_name)
            if twin is None or twin.dead_letter_of != spec.name:
                problems.append(
                    f"topic {spec.name!r}: dlq = true but no row {spec.dlq_name!r} "
                    f"with dead_letter_of = {spec.name!r}"
                )
    return problems


def _naming_problems(topics: tuple[TopicSpec, ...]) -> list[str]:
    problems = []
    for spec in topics:
        name = TOPIC_NAME.match(spec.name)
        if name is None:
            problems.append(f"topic {spec.name!r}: name must be <domain>.<kind>.v<N>[.dlq]")
            continue
        if bool(name["dlq"]) != spec.is_dead_letter:
            problems.append(f"topic {spec.name!r}: only dead-letter topics end in '.dlq'")
        value = VALUE_MESSAGE.match(spec.value)
        if value is not None and value["domain"] != name["domain"]:
            problems.append(
                f"topic {spec.name!r}: value {spec.value} is not in domain {name['domain']!r}"
            )
    return problems


@dataclass(frozen=True)
class TopicCatalog:
    """A validated set of topics; construction raises ``CatalogError`` when inconsistent."""

    topics: tuple[TopicSpec, ...]

    def __post_init__(self) -> None:
        problems = [p for spec in self.topics for p in _row_problems(spec)]
        by_name: dict[str, TopicSpec] = {}
        for spec in self.topics:
            if spec.name in by_name:
                problems.append(f"topic {spec.name!r}: listed twice")
            by_name[spec.name] = spec
        problems += _pairing_problems(by_name)
        if problems:
            raise CatalogError(problems)

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.topics)

    def __len__(self) -> int:
        return len(self.topics)

    @property
    def names(self) -> list[str]:
        """Topic names in catalog order."""
        return [spec.name for spec in self.topics]

    def get(self, name: str) -> TopicSpec:
        """The row named ``name``; ``KeyError`` when absent."""
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def renamed(self, rename: Callable[[str], str]) -> TopicCatalog:
        """A copy with every source topic renamed and dead-letter twins following it.

        Tests use it to apply the real catalog to a shared broker under names of their own.
        """
        new_names = {s.name: rename(s.name) for s in self.topics if not s.is_dead_letter}
        rows = []
        for spec in self.topics:
            if spec.dead_letter_of is None:
                rows.append(replace(spec, name=new_names[spec.name]))
            else:
                source = new_names[spec.dead_letter_of]
                rows.append(replace(spec, name=f"{source}.dlq", dead_letter_of=source))
        return TopicCatalog(tuple(rows))


_FIELD_TYPES: Final[dict[str, type]] = {
    "name": str,
    "key": str,
    "value": str,
    "partitions": int,
    "cleanup_policy": str,
    "retention_ms": int,
    "owner": str,
    "dlq": bool,
    "dead_letter_of": str,
}


def _parse_row(index: int, row: object) -> tuple[TopicSpec | None, list[str]]:
    where = f"[[topic]] #{index + 1}"
    if not isinstance(row, dict):
        return None, [f"{where}: not a table"]
    where = f"{where} ({row.get('name', '?')})"
    problems = [f"{where}: missing {field!r}" for field in _REQUIRED if field not in row]
    problems += [f"{where}: unknown field {field!r}" for field in row if field not in _FIELD_TYPES]
    for field, expected in _FIELD_TYPES.items():
        value = row.get(field)
        # bool is an int subclass: `partitions = true` must not pass as 1.
        wrong_bool = expected is int and isinstance(value, bool)
        if value is not None and (wrong_bool or not isinstance(value, expected)):
            problems.append(f"{where}: {field!r} must be {expected.__name__}")
    if problems:
        return None, problems
    return TopicSpec(**{field: row[field] for field in _FIELD_TYPES if field in row}), []


def parse_catalog(document: Mapping[str, Any], *, check_names: bool = True) -> TopicCatalog:
    """Build a catalog from a parsed TOML document (``{"topic": [...]}``).

    ``check_names`` also enforces the naming rules (``<domain>.<kind>.v<N>``, value message in
    the topic's domain); structural rules (partitions, policies, dead-letter pairing) always hold.
    """
    unknown = sorted(set(document) - {"topic"})
    rows = document.get("topic", [])
    problems = [f"unknown top-level key {key!r}" for key in unknown]
    if not isinstance(rows, list) or not rows:
        raise CatalogError([*problems, "the catalog has no [[topic]] rows"])
    specs = []
    for index, row in enumerate(rows):
        spec, row_problems = _parse_row(index, row)
        problems += row_problems
        if spec is not None:
            specs.append(spec)
    if check_names:
        problems += _naming_problems(tuple(specs))
    if problems:
        raise CatalogError(problems)
    return TopicCatalog(tuple(specs))


def load_catalog(path: Path = DEFAULT_CATALOG) -> TopicCatalog:
    """Read and validate the catalog file (``proto/topics.toml`` by default)."""
    with path.open("rb") as file:
        return parse_catalog(tomllib.load(file))


def message_class(full_name: str) -> type[Message]:
    """The generated class of a proto message, e.g. ``zerocontact.skeleton.v1.SkeletonEvent``.

    Imports every ``*_pb2`` module of the message's package (``zerocontact.<domain>.vN``) so
    that its descriptors are in the default pool, then looks the message up there. Raises
    ``LookupError`` when the package or the message does not exist (or ``make proto`` has not
    run).
    """
    match = VALUE_MESSAGE.match(full_name)
    if match is None:
        raise LookupError(f"{full_name!r} is not a zerocontact.<domain>.vN message name")
    package_name = f"zerocontact.{match['domain']}.{match['version']}"
    try:
        package = importlib.import_module(package_name)
    except ModuleNotFoundError as exc:
        raise LookupError(f"no generated package {package_name} (run `make proto`)") from exc
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"{package_name}.{module.name}")
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError as exc:
        raise LookupError(f"no message {full_name} in {package_name}") from exc
    return GetMessageClass(descriptor)


@dataclass(frozen=True, slots=True)
class TopicState:
    """What the broker says about one topic."""

    name: str
    partitions: int
    configs: dict[str, str]


@dataclass(frozen=True, slots=True)
class PartitionDrift:
    """An existing topic whose partition count is not the catalog's."""

    topic: str
    expected: int
    actual: int


@dataclass(frozen=True, slots=True)
class ConfigDrift:
    """An existing topic whose managed config is not the catalog's."""

    topic: str
    config: str
    expected: str
    actual: str | None


@dataclass(frozen=True, slots=True)
class EnsureReport:
    """What ``ensure_topics`` did and found."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    partition_drift: tuple[PartitionDrift, ...]
    config_drift: tuple[ConfigDrift, ...]

    @property
    def in_sync(self) -> bool:
        """True when every catalog topic exists exactly as the catalog says."""
        return not self.partition_drift and not self.config_drift


async def inspect_topics(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicState]:
    """Partition counts and managed configs of those ``names`` that exist on the broker."""
    # Only describe listed topics: a metadata request for a missing topic may auto-create it.
    present = set(await admin.list_topics())
    wanted = [name for name in names if name in present]
    if not wanted:
        return {}
    partitions: dict[str, int] = {}
    for topic in await admin.describe_topics(wanted):
        if topic["error_code"] != 0:
            raise for_code(topic["error_code"])(f"describe topic {topic['topic']}")
        partitions[topic["topic"]] = len(topic["partitions"])
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs=dict.fromkeys(MANAGED_CONFIGS))
        for name in wanted
    ]
    configs: dict[str, dict[str, str]] = {name: {} for name in wanted}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise for_code(resource["error_code"])(resource["error_message"])
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return {
        name: TopicState(name, partitions[name], configs[name])
        for name in wanted
        if name in partitions
    }


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    catalog: TopicCatalog,
    *,
    replication_factor: int = 1,
    timeout_ms: int = 30_000,
) -> EnsureReport:
    """Create the catalog's missing topics with their configs; report drift of existing ones.

    Existing topics are never altered: raising partitions remaps keys and lowering them is
    impossible, so a difference is reported for an operator to decide. Idempotent; safe to
    race with another creator (its "already exists" counts as existing).
    """
    present = set(await admin.list_topics())
    missing = [spec for spec in catalog if spec.name not in present]
    created: list[str] = []
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=spec.configs)
                for spec in missing
            ],
            timeout_ms=timeout_ms,
        )
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:
                message = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
                raise TopicCreationError(topic, message)
    existing = [spec for spec in catalog if spec.name not in created]
    names = [spec.name for spec in existing]
    states = await inspect_topics(admin, names)
    for _ in range(20):
        # A topic created a moment ago (by us or someone else) can be refused as existing
        # before the metadata lists it; wait for it rather than report it in sync.
        if all(name in states for name in names):
            break
        await asyncio.sleep(0.25)
        states = await inspect_topics(admin, names)
    partition_drift = []
    config_drift = []
    for spec in existing:
        state = states.get(spec.name)
        if state is None:  # reported as existing, gone since: let the next run create it
            continue
        if state.partitions != spec.partitions:
            partition_drift.append(PartitionDrift(spec.name, spec.partitions, state.partitions))
        for config, expected in spec.configs.items():
            actual = state.configs.get(config)
            if actual != expected:
                config_drift.append(ConfigDrift(spec.name, config, expected, actual))
    return EnsureReport(
        created=tuple(created),
        existing=tuple(spec.name for spec in existing),
        partition_drift=tuple(partition_drift),
        config_drift=tuple(config_drift),
    )
