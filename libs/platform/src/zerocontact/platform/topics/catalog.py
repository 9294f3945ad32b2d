"""The topic catalog (``proto/topics.toml``): its rows, their validation, and loading the file.

The catalog is the contract of every Kafka topic: its key, its value message (a generated
protobuf wrapper class), partitions, cleanup policy, retention, owner and dead-letter twin.
``load_catalog`` reads and validates it; everything here is pure (no broker, no protos).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CLEANUP_POLICIES",
    "DEFAULT_CATALOG",
    "MANAGED_CONFIGS",
    "RAW_BYTES",
    "TOPIC_NAME",
    "VALUE_MESSAGE",
    "CatalogError",
    "TopicCatalog",
    "TopicSpec",
    "load_catalog",
    "parse_catalog",
]

# libs/platform/src/zerocontact/platform/topics/catalog.py -> repository root; the catalog sits
# beside the protos it names. An installed platform (an image) is told where it is:
# ZC_TOPIC_CATALOG.
DEFAULT_CATALOG: Final = Path(__file__).resolve().parents[6] / "proto" / "topics.toml"

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
