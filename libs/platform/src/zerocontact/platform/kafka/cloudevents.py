"""CloudEvents Kafka protocol binding, binary content mode, for protobuf payloads.

The value is the serialized protobuf wrapper message of the topic; the attributes travel as
``ce_*`` headers, plus ``content-type`` and the W3C ``traceparent``. ``ce_dataschema`` names
the wrapper message and the ``zerocontact-contracts`` release it was written with
(:func:`dataschema_for`), so a reader outside the suite knows which descriptor set decodes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")
CONTRACTS_DISTRIBUTION = "zerocontact-contracts"
DATASCHEMA_PREFIX = "urn:zerocontact:contracts:"


class MalformedEvent(ValueError):
    """A Kafka record that is not a valid CloudEvent of ours (poison: goes to the DLQ)."""


@dataclass(frozen=True)
class CloudEvent:
    """One event: attributes plus the serialized protobuf payload."""

    id: str
    source: str
    type: str
    subject: str
    data: bytes
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    traceparent: str | None = None
    content_type: str = CONTENT_TYPE
    dataschema: str | None = None
    """``urn:zerocontact:contracts:<version>:<wrapper>``; None on records written before it."""

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers in binary content mode."""
        headers = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", _format_time(self.time).encode()),
            ("ce_subject", self.subject.encode()),
            ("content-type", self.content_type.encode()),
        ]
        if self.dataschema:
            headers.append(("ce_dataschema", self.dataschema.encode()))
        if self.traceparent:
            headers.append(("traceparent", self.traceparent.encode()))
        return headers

    @classmethod
    def from_record(cls, headers: Sequence[tuple[str, bytes]], value: bytes | None) -> CloudEvent:
        """Read an event back from a record's headers and value; raise :class:`MalformedEvent`."""
        try:
            attrs = {k: v.decode() for k, v in headers}
        except UnicodeDecodeError as exc:
            raise MalformedEvent(f"header is not UTF-8: {exc}") from exc
        missing = [name for name in _REQUIRED if not attrs.get(name)]
        if missing:
            raise MalformedEvent(f"missing CloudEvents headers: {', '.join(missing)}")
        if attrs["ce_specversion"] != SPEC_VERSION:
            raise MalformedEvent(f"unsupported ce_specversion {attrs['ce_specversion']!r}")
        if value is None:
            raise MalformedEvent("record has no value")
        try:
            time = _parse_time(attrs["ce_time"]) if "ce_time" in attrs else datetime.now(UTC)
        except ValueError as exc:
            raise MalformedEvent(f"bad ce_time {attrs['ce_time']!r}") from exc
        return cls(
            id=attrs["ce_id"],
            source=attrs["ce_source"],
            type=attrs["ce_type"],
            subject=attrs.get("ce_subject", ""),
            data=value,
            time=time,
            traceparent=attrs.get("traceparent"),
            content_type=attrs.get("content-type", CONTENT_TYPE),
            dataschema=attrs.get("ce_dataschema"),
        )


@cache
def contracts_version() -> str:
    """The installed ``zerocontact-contracts`` version: the release the payloads are built from."""
    return version(CONTRACTS_DISTRIBUTION)


def dataschema_for(message: str) -> str:
    """``ce_dataschema`` of a payload whose value is the protobuf message named ``message``.

    A URN rather than a URL: the schema is not served anywhere; it is the message's full
    proto name in the descriptor set of that contracts release (``make contracts``).
    """
    return f"{DATASCHEMA_PREFIX}{contracts_version()}:{message}"


def parse_dataschema(uri: str) -> tuple[str, str]:
    """(contracts version, full message name) of a :func:`dataschema_for` URN; ValueError else."""
    if not uri.startswith(DATASCHEMA_PREFIX):
        raise ValueError(f"not a zerocontact contracts dataschema: {uri!r}")
    release, sep, message = uri.removeprefix(DATASCHEMA_PREFIX).rpartition(":")
    if not (sep and release and message):
        raise ValueError(f"dataschema needs <version>:<message>: {uri!r}")
    return release, message


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("ce_time has no offset")
    return parsed.astimezone(UTC)
