"""The topic catalog agrees with itself and with the generated protos (no broker)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from zerocontact.platform.topics import (
    RAW_BYTES,
    CatalogError,
    TopicCatalog,
    load_catalog,
    message_class,
    parse_catalog,
)

# Written out here rather than imported, so the test states the rule independently.
NAME_RULE = re.compile(r"^[a-z][a-z0-9]*\.[a-z][a-z0-9-]*\.v[1-9][0-9]*$")


@pytest.fixture(scope="module")
def catalog() -> TopicCatalog:
    return load_catalog()


def test_catalog_loads_with_the_walking_skeleton_topic_and_its_dlq(catalog: TopicCatalog) -> None:
    skeleton = catalog.get("skeleton.events.v1")
    assert skeleton.value == "zerocontact.skeleton.v1.SkeletonEvent"
    assert skeleton.owner == "platform"
    assert skeleton.dlq
    assert catalog.get("skeleton.events.v1.dlq").dead_letter_of == "skeleton.events.v1"


def test_every_value_message_resolves_to_a_generated_wrapper_with_a_oneof(
    catalog: TopicCatalog,
) -> None:
    for spec in catalog:
        if spec.is_dead_letter:
            continue
        cls = message_class(spec.value)
        assert cls.DESCRIPTOR.full_name == spec.value
        # One wrapper per topic: each record carries exactly one event of the oneof.
        assert cls.DESCRIPTOR.oneofs, f"{spec.value} has no oneof"
        assert cls.__module__.startswith("zerocontact."), cls.__module__


def test_message_class_is_the_generated_class_and_round_trips() -> None:
    from zerocontact.common.v1 import money_pb2
    from zerocontact.skeleton.v1 import events_pb2

    cls = message_class("zerocontact.skeleton.v1.SkeletonEvent")
    assert cls is events_pb2.SkeletonEvent
    event = events_pb2.SkeletonEvent(
        deposit_recorded=events_pb2.DepositRecorded(
            account_id="acc-1",
            deposit_id="dep-1",
            amount=money_pb2.Money(currency_code="CNY", minor_units=1234),
            balance_after=money_pb2.Money(currency_code="CNY", minor_units=2**53 + 1),
        )
    )
    decoded = cls.FromString(event.SerializeToString())
    assert decoded == event
    assert decoded.WhichOneof("event") == "deposit_recorded"
    # int64 keeps amounts past float precision exact.
    assert decoded.deposit_recorded.balance_after.minor_units == 2**53 + 1


def test_money_is_integer_minor_units_and_the_phone_is_redacted() -> None:
    money = message_class("zerocontact.common.v1.Money").DESCRIPTOR
    assert money.fields_by_name["minor_units"].type == FieldDescriptor.TYPE_INT64
    assert money.fields_by_name["currency_code"].type == FieldDescriptor.TYPE_STRING
    opened = message_class("zerocontact.skeleton.v1.AccountOpened").DESCRIPTOR
    assert opened.fields_by_name["holder_phone"].GetOptions().debug_redact


def test_every_topic_with_dlq_is_paired_with_its_dead_letter_twin(catalog: TopicCatalog) -> None:
    sources = [spec for spec in catalog if spec.dlq]
    assert sources
    for source in sources:
        twin = catalog.get(f"{source.name}.dlq")
        assert twin.dead_letter_of == source.name
        assert twin.key == source.key
        assert twin.value == RAW_BYTES
        assert twin.retention_ms == -1 or twin.retention_ms >= source.retention_ms
    for spec in catalog:
        if spec.is_dead_letter:
            assert catalog.get(spec.dead_letter_of or "").dlq


def test_names_follow_domain_kind_version(catalog: TopicCatalog) -> None:
    for spec in catalog:
        source_name = spec.dead_letter_of or spec.name
        assert NAME_RULE.match(source_name), source_name
        if spec.is_dead_letter:
            assert spec.name == f"{source_name}.dlq"
        assert spec.partitions > 0
        assert spec.cleanup_policy in {"delete", "compact", "compact,delete"}


def test_renamed_catalog_keeps_dead_letter_pairing(catalog: TopicCatalog) -> None:
    renamed = catalog.renamed(lambda name: f"t-{name}-abc")
    expected = [
        f"t-{topic.dead_letter_of}-abc.dlq" if topic.dead_letter_of else f"t-{topic.name}-abc"
        for topic in (catalog.get(name) for name in catalog.names)
    ]
    assert sorted(renamed.names) == sorted(expected)
    for topic in (catalog.get(name) for name in catalog.names):
        if topic.dead_letter_of:
            dlq = renamed.get(f"t-{topic.dead_letter_of}-abc.dlq")
            assert dlq.dead_letter_of == f"t-{topic.dead_letter_of}-abc"


def _document() -> dict[str, Any]:
    base = {
        "key": "account id",
        "partitions": 3,
        "cleanup_policy": "delete",
        "retention_ms": 1000,
        "owner": "platform",
    }
    return {
        "topic": [
            {**base, "name": "skeleton.events.v1", "dlq": True}
            | {"value": "zerocontact.skeleton.v1.SkeletonEvent"},
            {**base, "name": "skeleton.events.v1.dlq", "dlq": False, "value": "bytes"}
            | {"dead_letter_of": "skeleton.events.v1", "retention_ms": 5000},
        ]
    }


def test_a_well_formed_document_parses() -> None:
    assert parse_catalog(_document()).names == ["skeleton.events.v1", "skeleton.events.v1.dlq"]


@pytest.mark.parametrize(
    ("row", "change", "problem"),
    [
        (0, {"partitions": 0}, "partitions must be > 0"),
        (0, {"partitions": True}, "'partitions' must be int"),
        (0, {"cleanup_policy": "forever"}, "cleanup_policy must be one of"),
        (0, {"retention": 5}, "unknown field 'retention'"),
        (0, {"name": "SkeletonEvents"}, "name must be <domain>.<kind>.v<N>"),
        (0, {"value": "SkeletonEvent"}, "value must be a full proto name"),
        (0, {"value": "zerocontact.loan.v1.LoanEvent"}, "is not in domain 'skeleton'"),
        (0, {"dlq": False}, "has a dead-letter row but dlq = false"),
        (1, {"key": "party id"}, "key must equal its source's key"),
        (1, {"retention_ms": 10}, "retention must be >= its source's"),
        (1, {"value": "zerocontact.skeleton.v1.SkeletonEvent"}, "value must be 'bytes'"),
        (1, {"dead_letter_of": "other.events.v1"}, "dead_letter_of names no catalog topic"),
    ],
)
def test_inconsistent_documents_are_rejected_with_the_reason(
    row: int, change: dict[str, Any], problem: str
) -> None:
    document = copy.deepcopy(_document())
    document["topic"][row].update(change)
    with pytest.raises(CatalogError) as raised:
        parse_catalog(document)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_a_source_without_its_dead_letter_row_is_rejected() -> None:
    document = _document()
    del document["topic"][1]
    with pytest.raises(CatalogError, match=r"no row 'skeleton\.events\.v1\.dlq'"):
        parse_catalog(document)


def test_duplicate_topics_are_rejected() -> None:
    document = _document()
    document["topic"].append(dict(document["topic"][1]))
    with pytest.raises(CatalogError, match="listed twice"):
        parse_catalog(document)


@pytest.mark.parametrize(
    "name", ["zerocontact.skeleton.v1.NoSuchEvent", "zerocontact.nosuchdomain.v1.Event", "Money"]
)
def test_message_class_of_an_unknown_name_is_a_lookup_error(name: str) -> None:
    with pytest.raises(LookupError):
        message_class(name)
