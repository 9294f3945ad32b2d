from __future__ import annotations

from zerocontact.assistant.repository import with_changes


def test_the_conversation_after_a_set_is_the_conversation_with_the_changes() -> None:
    doc = {"_id": "c1", "seq": 1, "messages": {"000001": {"text": "hi"}}, "requests": {}}
    after = with_changes(
        doc,
        {"seq": 2, "messages.000002": {"text": "hello"}, "requests.k1": {"first": 2}, "x.y.z": 1},
    )
    assert after == {
        "_id": "c1",
        "seq": 2,
        "messages": {"000001": {"text": "hi"}, "000002": {"text": "hello"}},
        "requests": {"k1": {"first": 2}},
        "x": {"y": {"z": 1}},
    }
    # The document that was read is left as it was (a retry starts from it).
    assert doc == {"_id": "c1", "seq": 1, "messages": {"000001": {"text": "hi"}}, "requests": {}}
