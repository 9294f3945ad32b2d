"""``zerocontact topics tail``'s pure parts: masking personal fields, --since, decoding records."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from rich.console import Console
from typer.testing import CliRunner

from zerocontact.gateway.v1 import identity_pb2 as gateway_identity
from zerocontact.identity.v1 import events_pb2 as identity_events
from zerocontact.loan.v1 import events_pb2 as loan_events
from zerocontact.platform.cli import app
from zerocontact.platform.redact import mask_value, masked_dict, personal_fields
from zerocontact.platform.tail import Decoder, parse_since, render
from zerocontact.platform.topics import load_catalog
from zerocontact.skeleton.v1 import events_pb2 as skeleton_events

PHONE = "+8613812345678"
RESIDENT_ID = "11010519491231002X"


def test_a_personal_string_keeps_its_last_four_characters_behind_a_fixed_mask() -> None:
    assert mask_value(PHONE) == "***5678"
    assert mask_value("+86*******5678") == "***5678"  # already masked: masked anyway
    assert mask_value("1234") == "***"  # nothing left to hide behind
    assert mask_value(1999) == "***"


def test_identity_customer_registered_shows_no_personal_data() -> None:
    event = identity_events.CustomerRegistered(
        customer_id="c-1", id_number_masked=RESIDENT_ID, phone_masked=PHONE, birth_year=1949
    )
    shown = masked_dict(event)
    assert shown == {
        "customer_id": "c-1",
        "id_number_masked": "***002X",
        "phone_masked": "***5678",
        "birth_year": 1949,
    }


def test_personal_fields_are_found_in_nested_messages() -> None:
    response = gateway_identity.GetPartyResponse(
        party=gateway_identity.Party(party_id="p-1", kind="customer", name="张三丰先生")
    )
    assert personal_fields(response) == ["party.name"]
    assert masked_dict(response)["party"] == {
        "party_id": "p-1",
        "kind": "customer",
        "name": "***三丰先生",
    }


def test_every_personal_field_of_a_request_is_masked() -> None:
    request = gateway_identity.RegisterCustomerRequest(
        name="Zhang San", resident_id=RESIDENT_ID, phone=PHONE, date_of_birth="1949-12-31",
        address="1 Chang'an Avenue", password="correct horse battery",
    )  # fmt: skip
    shown = masked_dict(request)
    assert sorted(shown) == sorted(personal_fields(request))
    assert all(value.startswith("***") for value in shown.values())
    assert "Zhang" not in str(shown) and "correct" not in str(shown)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        (" 15m ", timedelta(minutes=15)),
    ],
)
def test_since_takes_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "10", "m", "0m", "-5m", "1.5h", "10 minutes", "2w"])
def test_since_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like 30s, 10m, 2h or 1d"):
        parse_since(text)


def _record(topic: str, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    moment = int(datetime(2026, 12, 6, 5, 0, tzinfo=UTC).timestamp() * 1000)
    return ConsumerRecord(
        topic, 2, 17, moment, 0, b"party-1", value, None, len(value or b""), 0, headers
    )


def _skeleton_value() -> bytes:
    wrapper = skeleton_events.SkeletonEvent()
    wrapper.account_opened.holder_phone = PHONE
    return wrapper.SerializeToString()


def test_a_catalog_topic_decodes_to_its_inner_event_masked() -> None:
    headers = [("ce_type", b"zerocontact.skeleton.v1.AccountOpened"), ("ce_id", b"e-1")]
    shown = Decoder(load_catalog()).decode(
        _record("skeleton.events.v1", _skeleton_value(), headers)
    )
    assert shown.error is None
    assert shown.type == "zerocontact.skeleton.v1.AccountOpened"
    assert shown.event is not None and shown.event["holder_phone"] == "***5678"
    line = shown.to_json()
    assert line["timestamp"] == "2026-12-06T05:00:00.000Z"
    assert line["key"] == "party-1" and line["headers"]["ce_id"] == "e-1"


def test_a_dead_letter_decodes_with_its_original_topic_and_shows_the_error() -> None:
    wrapper = loan_events.LoanEvent()
    wrapper.loan_application_submitted.application_id = "a-1"
    headers = [("dlq_original_topic", b"mirror-of-loan"), ("dlq_error", b"boom")]
    decoder = Decoder(load_catalog(), {"mirror-of-loan.dlq": "loan.events.v1.dlq"})
    shown = decoder.decode(_record("mirror-of-loan.dlq", wrapper.SerializeToString(), headers))
    assert shown.type == "zerocontact.loan.v1.LoanApplicationSubmitted"
    assert shown.decoded_as == "loan.events.v1"
    console = Console(file=io.StringIO(), width=120)
    console.print(render(shown))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "dlq_error" in text and "boom" in text and '"application_id": "a-1"' in text


@pytest.mark.parametrize(
    ("topic", "value", "error"),
    [
        ("nobody.events.v1", b"\x08\x01", "nobody.events.v1 is not in the topic catalog"),
        ("skeleton.events.v1", b"\xff\xff\xff", "not a zerocontact.skeleton.v1.SkeletonEvent"),
        ("skeleton.events.v1", None, "no value (a tombstone)"),
        ("skeleton.events.v1", b"", "with no event this catalog knows"),
    ],
)
def test_a_record_that_does_not_decode_says_why(
    topic: str, value: bytes | None, error: str
) -> None:
    shown = Decoder(load_catalog()).decode(_record(topic, value, []))
    assert shown.error is not None and error in shown.error
    assert shown.event is None and shown.to_json()["size"] == len(value or b"")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "5x"], "error: --since: '5x' is not a duration like 30s, 10m, 2h or 1d"),
        (["--since", "1h", "--from-beginning"], "error: --from-beginning and --since exclude"),
        (["--decode-as", "nope.v1"], "error: --decode-as: 'nope.v1' is not a topic of the catalog"),
    ],
)
def test_wrong_options_are_one_line_before_any_broker_is_asked(
    args: list[str], message: str
) -> None:
    # Port 9 (discard) on loopback: were a broker asked, the error would be another one.
    done = CliRunner().invoke(
        app, ["topics", "tail", "loan.events.v1", "--bootstrap", "127.0.0.1:9", *args]
    )
    assert done.exit_code == 2
    assert done.stderr.startswith(message) and len(done.stderr.strip().splitlines()) == 1
