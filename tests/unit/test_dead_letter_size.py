"""A dead letter fits the producer's request limit whatever the size of its record."""

from __future__ import annotations

from zerocontact.platform.kafka.consumer import MAX_DEAD_LETTER_BYTES, dead_letter_record

HEADERS = [("ce_id", b"1"), ("dlq_error", b"x" * 1000), ("dlq_original_topic", b"t")]


def test_a_record_that_fits_goes_whole() -> None:
    assert dead_letter_record(b"k", b"v" * 1000, HEADERS) == (b"v" * 1000, HEADERS)


def test_a_record_at_the_limit_goes_without_its_value() -> None:
    value, headers = dead_letter_record(b"k", b"v" * 1_048_000, HEADERS)
    assert value == b""
    assert headers == [*HEADERS, ("dlq_value_dropped", b"1048000")]
    assert sum(len(k) + len(v) for k, v in headers) < MAX_DEAD_LETTER_BYTES
