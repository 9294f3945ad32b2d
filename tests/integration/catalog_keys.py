"""Records as cataloged: each record's key is what ``proto/topics.toml`` says it is.

The catalog's ``key`` is prose for people; ``KEY_RULES`` is the same rule for a machine: per
topic, the catalog text it implements and, per event, the payload field (or the literal) the
key must equal. A changed catalog text fails ``check_record`` until the rule here is reviewed
with it. The readers of the service tests call ``check_record`` on every record they read, so
every event the integration tests make the services produce is checked, with its
``ce_dataschema`` (it must name the catalog's value message).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer

from zerocontact.platform.kafka.cloudevents import CloudEvent, dataschema_for
from zerocontact.platform.topics import load_catalog
from zerocontact.platform.topics.messages import message_class


@dataclass(frozen=True)
class Literal:
    """A key that is a fixed text, for an event about no party."""

    text: str


# Paths are dotted fields of the event message ("party.party_id"); the first one the event has and
# sets is the key.
Rule = Sequence[str] | Literal


@dataclass(frozen=True)
class KeyRule:
    """How one topic is keyed: the catalog text and, per event, what the key equals."""

    catalog_text: str
    default: Rule
    by_event: dict[str, Rule] = field(default_factory=dict)
    fallback: str | None = None  # the key when every field is empty

    def rule(self, event: str) -> Rule:
        return self.by_event.get(event, self.default)


KEY_RULES: Final[dict[str, KeyRule]] = {
    "skeleton.events.v1": KeyRule("account id", ("account_id",)),
    "identity.events.v1": KeyRule(
        "party id (customer or enterprise); the literal trust-log for TreeHeadSigned",
        ("customer_id", "enterprise_id", "party.party_id"),
        {"TreeHeadSigned": Literal("trust-log")},
    ),
    "identity.notifications.v1": KeyRule("customer id", ("customer_id",)),
    "loan.events.v1": KeyRule("party id (borrower or reporting merchant)", ("party_id",)),
    "signals.risk.v1": KeyRule("party id", ("party_id",)),
    "payroll.events.v1": KeyRule("employer id (an enterprise id from identity)", ("employer_id",)),
    "marketing.events.v1": KeyRule(
        "party id (campaign id for CampaignReviewed)",
        ("party_id",),
        {"CampaignReviewed": ("campaign_id",)},
    ),
    "marketing.notifications.v1": KeyRule("party id", ("party_id",)),
    "assistant.events.v1": KeyRule(
        "party id (the customer, or the enterprise representative, the conversation is with)",
        ("party_id",),
    ),
    "signals.engagement.v1": KeyRule(
        "party id (EngagementScore), campaign id (CampaignFunnel), session id (StudioViewers)",
        ("party_id",),
        {"CampaignFunnel": ("campaign_id",), "StudioViewers": ("session_id",)},
    ),
    "gateway.audit.v1": KeyRule(
        "partner id; - for a call no partner was authenticated for", ("partner_id",), fallback="-"
    ),
}

_CATALOG = load_catalog()


def _field(message: Any, path: str) -> str:
    for name in path.split("."):
        if name not in message.DESCRIPTOR.fields_by_name:
            return ""
        message = getattr(message, name)
    return str(message)


def expected_key(topic: str, event: Any) -> str:
    """The key the catalog prescribes for ``event`` (a message set in ``topic``'s wrapper)."""
    spec = KEY_RULES[topic]
    rule = spec.rule(event.DESCRIPTOR.name)
    if isinstance(rule, Literal):
        return rule.text
    for path in rule:
        if value := _field(event, path):
            return value
    if spec.fallback is not None:
        return spec.fallback
    raise AssertionError(f"{topic}: {event.DESCRIPTOR.name} has none of {list(rule)} set")


def check_record(topic: str, key: bytes | None, headers: Sequence[tuple[str, bytes]],
                 value: bytes | None) -> Any:  # fmt: skip
    """Assert a record of the cataloged ``topic`` is keyed and described as cataloged.

    ``topic`` is the catalog name (tests run on renamed copies). Returns the event message.
    """
    spec = _CATALOG.get(topic)
    rule = KEY_RULES[topic]
    assert spec.key == rule.catalog_text, f"{topic}: catalog key changed, review KEY_RULES"
    wrapper = message_class(spec.value).FromString(value or b"")
    oneof = wrapper.DESCRIPTOR.oneofs[0].name
    kind = wrapper.WhichOneof(oneof)
    assert kind, f"{topic}: no event set in the {spec.value}"
    event = getattr(wrapper, kind)
    cloud = CloudEvent.from_record(headers, value)
    schema = dataschema_for(spec.value)
    assert cloud.dataschema == schema, f"{topic}: ce_dataschema {cloud.dataschema}, not {schema}"
    assert (key or b"").decode() == expected_key(topic, event), (
        f"{topic}: {event.DESCRIPTOR.name} keyed {key!r}, catalog says {spec.key!r}"
    )
    return event


async def check_topic(bootstrap: str, topic: str, cataloged: str) -> Counter[str]:
    """Check every record ``topic`` holds now as the catalog's ``cataloged``; count per event."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []

    async def fetch() -> None:
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)

    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():  # assigned once the topic's metadata is in
                await fetch()
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    await fetch()
    finally:
        await consumer.stop()
    seen: Counter[str] = Counter()
    for r in records:
        seen[check_record(cataloged, r.key, r.headers, r.value).DESCRIPTOR.name] += 1
    return seen


async def check_topic_holding(
    bootstrap: str, topic: str, cataloged: str, expected: set[str], within_s: float = 60
) -> Counter[str]:
    """:func:`check_topic` once ``topic`` holds every event of ``expected``: outboxes and the
    signals worker publish after the state the test waited for (a loaded CI run read the
    marketing topic before its relay had sent OfferConverted)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        seen = await check_topic(bootstrap, topic, cataloged)
        if expected <= set(seen) or asyncio.get_running_loop().time() > deadline:
            return seen
        await asyncio.sleep(0.5)
