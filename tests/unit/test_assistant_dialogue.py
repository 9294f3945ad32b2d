"""The assistant's dialogue state machine: slots asked for and filled, confirmation before
money moves, failed turns and hand-offs, the quiet assistant while a person holds the chat."""

from __future__ import annotations

import pytest

from zerocontact.assistant.domain.dialogue import (
    Act,
    Answer,
    Ask,
    Clarify,
    Confirm,
    Declined,
    DialoguePolicy,
    DialogueState,
    HandOff,
    HandoffReason,
    Option,
    Step,
    ToHuman,
    Understood,
    next_step,
    ordinal,
    parse_amount,
    with_options,
)

POLICY = DialoguePolicy(handoff_below=0.2, clarify_below=0.45, max_failed_turns=2, max_slot_asks=2)
LOAN = "0190f3a1-7c2e-7b4e-9a1d-2b3c4d5e6f70"
OTHER_LOAN = "0190f3a1-7c2e-7b4e-9a1d-2b3c4d5e6f71"


def say(
    state: DialogueState,
    intent: str,
    text: str = "",
    confidence: float = 0.9,
    **slots: str,
) -> tuple[Step, DialogueState]:
    return next_step(state, Understood(intent, confidence, slots), text or intent, POLICY)


def test_a_question_is_answered_and_resets_failed_turns() -> None:
    step, state = say(DialogueState(failed_turns=1), "faq", "how do I repay early?")
    assert step == Answer()
    assert state == DialogueState()


def test_a_read_action_with_its_slot_is_done_at_once() -> None:
    step, state = say(DialogueState(), "loan.next_installment", loan_id=LOAN)
    assert step == Act("loan.next_installment", {"loan_id": LOAN})
    assert state.pending is None


def test_a_missing_slot_is_asked_for_and_the_answer_fills_it() -> None:
    step, state = say(DialogueState(), "loan.early_repayment_quote", "提前还款要多少钱")
    assert step == Ask("loan.early_repayment_quote", "loan_id", {})
    assert state.pending is not None and state.pending.slot == "loan_id"
    # The customer pastes the loan number; the understanding saw no slot in "是这笔 <id>".
    step, state = say(state, "unknown", f"是这笔 {LOAN}", confidence=0.1)
    assert step == Act("loan.early_repayment_quote", {"loan_id": LOAN})
    assert state == DialogueState()


def test_an_offered_choice_is_taken_by_its_number() -> None:
    _, state = say(DialogueState(), "identity.lock_device", "我手机丢了")
    state = with_options(
        state, [Option("phone-a", "phone-a (1)"), Option("tablet-b", "tablet-b (2)")]
    )
    step, state = say(state, "unknown", "2", confidence=0.05)
    assert step == Act("identity.lock_device", {"device_id": "tablet-b"})
    assert state.pending is None


DEVICES = [
    Option("phone-a", "phone-a (1)"),
    Option("tablet-b", "tablet-b (2)"),
    Option("pc-c", "pc-c (1)"),
]


@pytest.mark.parametrize(
    ("reply", "device"),
    [
        ("第二台", "tablet-b"),
        ("第2个", "tablet-b"),
        ("第一部吧", "phone-a"),
        ("最后一个", "pc-c"),
        ("the first one", "phone-a"),
        ("the 2nd", "tablet-b"),
        ("number 3", "pc-c"),
        ("last one please", "pc-c"),
    ],
)
def test_a_short_reply_picks_an_offered_choice_by_its_place(reply: str, device: str) -> None:
    """The reply answers the open question, not a fresh one: the understanding may well call
    "第二台" unknown."""
    _, state = say(DialogueState(), "identity.lock_device", "帮我锁定设备")
    state = with_options(state, DEVICES)
    step, state = say(state, "unknown", reply, confidence=0.05)
    assert step == Act("identity.lock_device", {"device_id": device})
    assert state.pending is None and state.failed_turns == 0


def test_a_place_beyond_the_choices_is_asked_again() -> None:
    _, state = say(DialogueState(), "identity.lock_device", "帮我锁定设备")
    state = with_options(state, DEVICES)
    step, state = say(state, "unknown", "第五台", confidence=0.05)
    assert step == Ask("identity.lock_device", "device_id", {}, again=True)


def test_yes_to_the_only_choice_offered_takes_it() -> None:
    _, state = say(DialogueState(), "identity.lock_device", "帮我锁定设备")
    state = with_options(state, DEVICES[:1])
    step, _ = say(state, "confirm.yes", "对，就是它")
    assert step == Act("identity.lock_device", {"device_id": "phone-a"})
    # With two choices a yes says not which one.
    state = with_options(state, DEVICES[:2])
    step, _ = say(state, "confirm.yes", "对")
    assert step == Ask("identity.lock_device", "device_id", {}, again=True)


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("第二笔", 2),
        ("第 3 个", 3),
        ("两个都不是", None),
        ("最后那台", -1),
        ("First", 1),
        ("the third one", 3),
        ("#2", 2),
        ("no. 1", 1),
        ("hello", None),
        ("第二期的还款日是哪天，我想知道", None),  # a question, not a pick
    ],
)
def test_ordinal(text: str, place: int | None) -> None:
    assert ordinal(text) == place


def test_a_repayment_asks_each_slot_then_waits_for_an_explicit_yes() -> None:
    step, state = say(DialogueState(), "loan.repay", "我要还款")
    assert step == Ask("loan.repay", "loan_id", {})
    step, state = say(state, "unknown", LOAN, confidence=0.3)
    assert step == Ask("loan.repay", "amount", {"loan_id": LOAN})
    step, state = say(state, "unknown", "还 1,250.50 元", confidence=0.3)
    assert step == Confirm("loan.repay", {"loan_id": LOAN, "amount": "1250.50"})
    assert state.pending is not None and state.pending.awaiting == "confirmation"
    step, state = say(state, "confirm.yes", "确认")
    assert step == Act("loan.repay", {"loan_id": LOAN, "amount": "1250.50"})
    assert state.pending is None


def test_no_at_the_confirmation_does_nothing() -> None:
    _, state = say(DialogueState(), "loan.repay", loan_id=LOAN, amount="100")
    assert state.pending is not None and state.pending.awaiting == "confirmation"
    step, state = say(state, "confirm.no", "算了")
    assert step == Declined("loan.repay", {"loan_id": LOAN, "amount": "100"})
    assert state.pending is None


def test_a_money_move_is_never_done_without_the_yes() -> None:
    """Whatever else is said at the confirmation, nothing is acted on but a clear yes."""
    _, waiting = say(DialogueState(), "loan.repay", loan_id=LOAN, amount="100")
    for intent, confidence in (
        ("confirm.yes", 0.3),  # an unsure yes is not a yes
        ("greeting", 0.9),
        ("faq", 0.9),
        ("thanks", 0.9),
        ("unknown", 0.5),
    ):
        step, _ = say(waiting, intent, confidence=confidence)
        assert not isinstance(step, Act), (intent, step)


def test_an_unanswered_confirmation_is_asked_again_then_handed_off() -> None:
    _, state = say(DialogueState(), "loan.repay", loan_id=LOAN, amount="100")
    step, state = say(state, "greeting", "你好")
    assert step == Confirm("loan.repay", {"loan_id": LOAN, "amount": "100"})
    step, state = say(state, "thanks", "谢谢")
    assert step == HandOff(HandoffReason.FAILED_TURNS)
    assert state.with_person


def test_another_action_replaces_the_pending_one() -> None:
    _, state = say(DialogueState(), "loan.repay", loan_id=LOAN, amount="100")
    step, state = say(state, "loan.next_installment", loan_id=OTHER_LOAN)
    assert step == Act("loan.next_installment", {"loan_id": OTHER_LOAN})
    assert state.pending is None


def test_two_failed_turns_in_a_row_go_to_a_person() -> None:
    step, state = say(DialogueState(), "unknown", "asdfgh", confidence=0.6)
    assert step == Clarify() and state.failed_turns == 1
    step, state = say(state, "faq", "嗯那个", confidence=0.3)
    assert step == HandOff(HandoffReason.FAILED_TURNS)
    assert state == DialogueState(with_person=True)


def test_an_understood_turn_between_failures_starts_the_count_again() -> None:
    _, state = say(DialogueState(), "unknown", confidence=0.6)
    _, state = say(state, "greeting")
    step, state = say(state, "unknown", confidence=0.6)
    assert step == Clarify() and state.failed_turns == 1


def test_very_low_confidence_goes_to_a_person_at_once() -> None:
    step, state = say(DialogueState(), "faq", confidence=0.1)
    assert step == HandOff(HandoffReason.LOW_CONFIDENCE)
    assert state.with_person


@pytest.mark.parametrize(
    ("intent", "reason"),
    [("handoff.request", HandoffReason.CUSTOMER_REQUEST), ("complaint", HandoffReason.COMPLAINT)],
)
def test_asking_for_a_person_or_complaining_goes_to_a_person(
    intent: str, reason: HandoffReason
) -> None:
    _, waiting = say(DialogueState(), "loan.repay", "我要还款")
    step, state = say(waiting, intent, "转人工")
    assert step == HandOff(reason)
    assert state == DialogueState(with_person=True)


def test_while_a_person_holds_the_conversation_the_assistant_is_quiet() -> None:
    state = DialogueState(with_person=True)
    for intent in ("faq", "loan.repay", "confirm.yes", "handoff.request"):
        step, after = say(state, intent)
        assert step == ToHuman() and after == state


def test_a_slot_not_given_twice_hands_off() -> None:
    _, state = say(DialogueState(), "payroll.batch_status", "代发批次状态")
    step, state = say(state, "unknown", "不知道", confidence=0.5)
    assert step == Ask("payroll.batch_status", "batch_id", {}, again=True)
    step, state = say(state, "unknown", "还是不知道", confidence=0.5)
    assert step == HandOff(HandoffReason.FAILED_TURNS)


def test_no_while_asked_for_a_slot_cancels() -> None:
    _, state = say(DialogueState(), "loan.application_status", "我的申请怎么样了")
    step, state = say(state, "confirm.no", "不用了")
    assert step == Declined("loan.application_status", {})
    assert state.pending is None


def test_revoking_sessions_needs_no_slot_and_no_confirmation() -> None:
    step, _ = say(DialogueState(), "identity.revoke_sessions", "退出其他设备")
    assert step == Act("identity.revoke_sessions", {})


def test_slots_the_intent_does_not_use_are_dropped() -> None:
    step, _ = say(DialogueState(), "loan.next_installment", loan_id=LOAN, batch_id="b-1")
    assert step == Act("loan.next_installment", {"loan_id": LOAN})


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("还 500 元", "500"),
        ("1,250.50", "1250.50"),
        ("repay 88.8 please", "88.8"),
        ("还 0 元", None),
        ("100 或 200", None),
        ("还一半", None),
        ("12.345", None),
    ],
)
def test_an_amount_is_one_positive_number_with_at_most_two_decimals(
    text: str, amount: str | None
) -> None:
    assert parse_amount(text) == amount
