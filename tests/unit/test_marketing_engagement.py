"""The engagement score's decay (services/signals/engagement.py, pure parts)."""

from __future__ import annotations

import pytest

from zerocontact.assistant.v1 import events_pb2 as assistant_pb
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.signals.engagement import (
    WEIGHTS,
    add,
    assistant_interaction,
    decayed,
    interaction,
)

DAY = 86_400.0
HALF_LIFE = 7 * DAY


def test_half_life_halves_the_score() -> None:
    assert decayed(8.0, 0.0, HALF_LIFE, HALF_LIFE) == pytest.approx(4.0)
    assert decayed(8.0, 0.0, 3 * HALF_LIFE, HALF_LIFE) == pytest.approx(1.0)
    assert decayed(8.0, 10.0, 5.0, HALF_LIFE) == 8.0  # never grows backwards


def test_score_is_the_sum_of_decayed_weights_in_any_order() -> None:
    events = [("a", 10.0, 0.0), ("b", 3.0, 2 * DAY), ("c", 1.0, 9 * DAY)]
    expected = sum(w * 2 ** (-(9 * DAY - t) / HALF_LIFE) for _, w, t in events)
    for order in (events, list(reversed(events))):
        state = None
        for eid, w, t in order:
            state, fresh = add(state, eid, w, t, HALF_LIFE)
            assert fresh
        assert state is not None
        assert state["score"] == pytest.approx(expected)
        assert state["as_of"] == 9 * DAY


def test_a_redelivered_event_adds_nothing() -> None:
    state, _ = add(None, "a", 10.0, 0.0, HALF_LIFE)
    again, fresh = add(state, "a", 10.0, 0.0, HALF_LIFE)
    assert not fresh and again["score"] == 10.0


def test_interactions() -> None:
    w = marketing_pb.MarketingEvent()
    w.offer_interaction.party_id, w.offer_interaction.campaign_id = "p", "c"
    w.offer_interaction.stage = "clicked"
    found = interaction(w)
    assert found is not None and found.weight_key == "clicked" and found.funnel_stage == "clicked"
    w2 = marketing_pb.MarketingEvent()
    w2.offer_converted.party_id, w2.offer_converted.campaign_id = "p", "c"
    w2.offer_converted.holdout = True
    held = interaction(w2)
    assert held is not None and held.campaign_id == "" and WEIGHTS[held.weight_key or ""] == 10.0
    w3 = marketing_pb.MarketingEvent()
    w3.contact_suppressed.party_id = "p"
    assert interaction(w3) is None


def test_the_assistant_s_answers_and_done_actions_are_interactions() -> None:
    answered = assistant_pb.AssistantEvent()
    answered.question_answered.party_id = "p1"
    found = assistant_interaction(answered)
    assert found is not None and found.party_id == "p1"
    assert found.weight_key == "assistant_answered" and WEIGHTS["assistant_answered"] > 0
    done = assistant_pb.AssistantEvent()
    done.action_performed.party_id = "p1"
    done.action_performed.outcome = assistant_pb.ACTION_OUTCOME_SUCCEEDED
    found = assistant_interaction(done)
    assert found is not None and found.weight_key == "assistant_action"
    assert WEIGHTS["assistant_action"] > WEIGHTS["assistant_answered"]
    refused = assistant_pb.AssistantEvent()
    refused.action_performed.party_id = "p1"
    refused.action_performed.outcome = assistant_pb.ACTION_OUTCOME_REFUSED
    found = assistant_interaction(refused)
    assert found is not None and found.weight_key is None  # nothing done: no engagement
    complaint = assistant_pb.AssistantEvent()
    complaint.complaint_raised.party_id = "p1"
    assert assistant_interaction(complaint) is None  # marketing's business, not a score
