"""The key rules the integration tests apply cover the whole catalog, and hold for trust events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.catalog_keys import KEY_RULES, Literal, check_record
from zerocontact.identity.trust import events as trust_events
from zerocontact.identity.trust.treehead import TreeHead
from zerocontact.platform.topics import load_catalog
from zerocontact.platform.topics.messages import message_class

CATALOG = load_catalog()
SOURCES = [t for t in CATALOG if not t.is_dead_letter]


def test_every_produced_topic_has_a_key_rule_stating_the_catalog_text() -> None:
    assert {t.name for t in SOURCES} == set(KEY_RULES)
    for topic in SOURCES:
        assert KEY_RULES[topic.name].catalog_text == topic.key, topic.name


@pytest.mark.parametrize("topic", SOURCES, ids=lambda t: t.name)
def test_every_event_of_a_topic_has_the_fields_its_rule_names(topic: object) -> None:
    name, value = topic.name, topic.value  # type: ignore[attr-defined]
    wrapper = message_class(value).DESCRIPTOR
    rules = KEY_RULES[name]
    for case in wrapper.oneofs[0].fields:
        rule = rules.rule(case.message_type.name)
        if isinstance(rule, Literal):
            continue
        assert any(_resolves(case.message_type, path) for path in rule), (
            f"{name}: {case.message_type.name} has none of {list(rule)}"
        )


def _resolves(message: Any, path: str) -> bool:
    for part in path.split("."):
        if message is None or part not in message.fields_by_name:
            return False
        message = message.fields_by_name[part].message_type
    return True


def test_tree_heads_and_party_events_on_identity_events_are_keyed_as_cataloged() -> None:
    at = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
    head = TreeHead(tree_size=3, timestamp_ms=1_780_000_000_000, root_hash=b"r", signature=b"s")
    signed = trust_events.contract_signed(
        contract_id="c-1", customer_id="cust-1", template_id="t", contract_sha256="00",
        leaf_index=2, tree_size=3, at=at, topic="identity.events.v1",
    )  # fmt: skip
    for item in (trust_events.tree_head_signed(head, topic="identity.events.v1"), signed):
        record = (item.key.encode(), item.event.headers(), item.event.data)
        check_record("identity.events.v1", *record)
    assert trust_events.tree_head_signed(head, topic="x").key == "trust-log"


def test_a_record_keyed_otherwise_than_cataloged_is_caught() -> None:
    head = TreeHead(tree_size=1, timestamp_ms=1_780_000_000_000, root_hash=b"r", signature=b"s")
    item = trust_events.tree_head_signed(head, topic="identity.events.v1")
    with pytest.raises(AssertionError, match="keyed b'party-1'"):
        check_record("identity.events.v1", b"party-1", item.event.headers(), item.event.data)
    stale = [(k, v) for k, v in item.event.headers() if k != "ce_dataschema"]
    with pytest.raises(AssertionError, match="ce_dataschema None"):
        check_record("identity.events.v1", item.key.encode(), stale, item.event.data)
