"""Headers the risk pipeline's stages put on the records they forward."""

from __future__ import annotations

import time

from zerocontact.signals import records


def test_a_stage_stamps_when_it_forwarded_the_record() -> None:
    before = time.time()
    name, value = records.sent_header("device")
    after = time.time()
    assert name == "zc-sent-device"
    assert before - 1e-6 <= float(value.decode()) <= after + 1e-6


def test_the_stamp_is_not_read_as_a_feature() -> None:
    headers = [records.features_header("party", {"x": 1}), records.sent_header("party")]
    assert set(records.read_features_header(headers)) == {"x"}
