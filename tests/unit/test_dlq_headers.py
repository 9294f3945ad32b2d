"""What a replayed dead letter carries: its own headers, repaired where a default is given."""

from __future__ import annotations

from zerocontact.platform.dlq import replay_headers


def test_dead_letter_headers_are_removed() -> None:
    headers = [("ce_id", b"1"), ("dlq_error", b"boom"), ("dlq_original_topic", b"t")]
    assert replay_headers(headers) == [("ce_id", b"1")]


def test_defaults_fill_missing_or_empty_headers_only() -> None:
    defaults = {"ce_specversion": "1.0"}
    assert replay_headers([("ce_id", b"1")], defaults) == [
        ("ce_id", b"1"),
        ("ce_specversion", b"1.0"),
    ]
    assert replay_headers([("ce_specversion", b""), ("ce_id", b"1")], defaults) == [
        ("ce_id", b"1"),
        ("ce_specversion", b"1.0"),
    ]
    kept = [("ce_specversion", b"0.3"), ("ce_id", b"1")]
    assert replay_headers(kept, defaults) == kept  # a record's own header always wins
