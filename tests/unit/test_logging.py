"""JSON log lines, and personal data masked in messages, extra fields and exceptions."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from zerocontact.platform.logging import configure_logging, mask_personal_data

CARD = "6222021234567890123"
PHONE = "+8613812345678"
MOBILE = "13812345678"
RESIDENT_ID = "11010519491231002X"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("loan", "DEBUG", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_standard_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("zerocontact.loan").info("loan %s approved", "L-1", extra={"amount": 100})
    logging.getLogger("other").warning("second")
    first, second = lines(log_stream)
    assert first["message"] == "loan L-1 approved"
    assert first["level"] == "INFO"
    assert first["logger"] == "zerocontact.loan"
    assert first["service"] == "loan"
    assert first["amount"] == 100
    assert first["ts"].endswith("Z")
    assert datetime.fromisoformat(first["ts"]).utcoffset() is not None
    assert second["level"] == "WARNING"


def test_card_phone_and_resident_id_appear_only_masked(log_stream: io.StringIO) -> None:
    log = logging.getLogger("zerocontact.identity")
    log.info(
        "customer %s with card %s, phone %s, mobile %s",
        RESIDENT_ID,
        CARD,
        PHONE,
        MOBILE,
        extra={"applicant": {"id_number": RESIDENT_ID, "phones": [PHONE, MOBILE]},
               "card": int(CARD), "note": f"身份证号{RESIDENT_ID}，卡号{CARD}"},
    )  # fmt: skip
    raw = log_stream.getvalue()
    for secret in (CARD, PHONE, MOBILE, RESIDENT_ID, "8613812345678", "1234567890"):
        assert secret not in raw
    (line,) = lines(log_stream)
    assert line["message"] == (
        "customer 110***********002X with card 622202*********0123, "
        "phone +86*******5678, mobile 138****5678"
    )
    assert line["applicant"] == {
        "id_number": "110***********002X",
        "phones": ["+86*******5678", "138****5678"],
    }
    assert line["card"] == "622202*********0123"
    assert line["note"] == "身份证号110***********002X，卡号622202*********0123"


def test_exception_text_is_included_and_masked(log_stream: io.StringIO) -> None:
    try:
        raise ValueError(f"card {CARD} closed")
    except ValueError:
        logging.getLogger("zerocontact.payroll").exception("payment failed")
    (line,) = lines(log_stream)
    assert "Traceback" in line["exc"]
    assert "ValueError: card 622202*********0123 closed" in line["exc"]
    assert CARD not in log_stream.getvalue()


def test_reserved_names_in_extra_do_not_overwrite_standard_fields(
    log_stream: io.StringIO,
) -> None:
    logging.getLogger("x").info("hello", extra={"service": "spoofed", "level": "NONE"})
    (line,) = lines(log_stream)
    assert line["service"] == "loan" and line["extra_service"] == "spoofed"
    assert line["level"] == "INFO" and line["extra_level"] == "NONE"


def test_configuring_twice_does_not_duplicate_lines(log_stream: io.StringIO) -> None:
    configure_logging("loan", "INFO", stream=log_stream)
    logging.getLogger("x").info("once")
    logging.getLogger("x").debug("filtered by level")
    assert [line["message"] for line in lines(log_stream)] == ["once"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 6222 0212 3456 7890 123 ok", "card 622202*********0123 ok"),
        ("tel 138-1234-5678", "tel 138****5678"),
        ("order 202405061234 total 1999", "order 202405061234 total 1999"),  # 12 digits: kept
        ("id 11010519491231002x.", "id 110***********002X."),
        ("uuid 018f4df7-3e00-7000-8000-000000000000", "uuid 018f4df7-3e00-7000-8000-000000000000"),
    ],
)
def test_mask_personal_data_in_free_text(text: str, masked: str) -> None:
    assert mask_personal_data(text) == masked
