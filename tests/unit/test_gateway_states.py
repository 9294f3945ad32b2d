"""Every state the loan and payroll services have maps to a value of the gateway's enums
(AIP-216): a state added to a service without a proto value fails here, not at a partner."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from zerocontact.assistant.api import schemas as assistant_api
from zerocontact.gateway import convert
from zerocontact.gateway.v1 import assistant_pb2, loan_pb2, payroll_pb2
from zerocontact.loan.domain.loans import ApplicationState, LoanState
from zerocontact.payroll.domain.batches import BatchState


@pytest.mark.parametrize(
    ("states", "to_enum", "enum", "prefix"),
    [
        (ApplicationState, convert.application_state, loan_pb2.LoanApplicationState,
         "LOAN_APPLICATION_STATE_"),
        (LoanState, convert.loan_state, loan_pb2.LoanState, "LOAN_STATE_"),
        (BatchState, convert.batch_state, payroll_pb2.PayrollBatchState, "PAYROLL_BATCH_STATE_"),
    ],
)  # fmt: skip
def test_every_service_state_has_its_enum_value_and_nothing_else_does(
    states: Any, to_enum: Any, enum: Any, prefix: str
) -> None:
    for state in states:
        value = to_enum(str(state))
        assert value != 0, f"{states.__name__}.{state} has no value in {prefix}*"
        assert enum.Name(value) == f"{prefix}{state}"
    # and no enum value the service cannot produce (besides UNSPECIFIED)
    names = {n.removeprefix(prefix) for n in enum.DESCRIPTOR.values_by_name} - {"UNSPECIFIED"}
    assert names == {str(s) for s in states}


def test_an_unknown_state_reads_as_unspecified_and_keeps_its_text() -> None:
    view = {
        "application_id": "a", "party_id": "p", "product_id": "merchant-310",
        "amount": "100.00", "currency": "CNY", "term_months": 12, "state": "ON_HOLD",
    }  # fmt: skip
    app = convert.application(view)
    assert app.state == "ON_HOLD"
    assert app.lifecycle_state == loan_pb2.LOAN_APPLICATION_STATE_UNSPECIFIED
    app = convert.application(view | {"state": "APPROVED"})
    assert app.lifecycle_state == loan_pb2.LOAN_APPLICATION_STATE_APPROVED


def test_a_watch_keeps_the_enum_in_step_with_the_text() -> None:
    app = loan_pb2.LoanApplication(state="ACCEPTED")
    loan = loan_pb2.Loan(state="DISBURSED")
    convert.sync_states(app, loan)
    assert app.lifecycle_state == loan_pb2.LOAN_APPLICATION_STATE_ACCEPTED
    assert loan.lifecycle_state == loan_pb2.LOAN_STATE_DISBURSED


def test_a_batch_view_carries_both() -> None:
    batch = convert.batch(
        {"batch_id": "b", "employer_id": "e", "state": "EXECUTING", "status": "ACCP",
         "item_count": 2, "control_sum": "10.00", "currency": "CNY", "counts": {"PAID": 1}},
    )  # fmt: skip
    assert batch.state == "EXECUTING"
    assert batch.lifecycle_state == payroll_pb2.PAYROLL_BATCH_STATE_EXECUTING


@pytest.mark.parametrize(
    ("literal", "enum", "prefix"),
    [
        (assistant_api.Sender, assistant_pb2.MessageSender, "MESSAGE_SENDER_"),
        (assistant_api.MessageKind, assistant_pb2.MessageKind, "MESSAGE_KIND_"),
        (assistant_api.ConversationView.model_fields["state"].annotation,
         assistant_pb2.ConversationState, "CONVERSATION_STATE_"),
        (assistant_api.HandoffRef.model_fields["state"].annotation, assistant_pb2.HandoffState,
         "HANDOFF_STATE_"),
        (assistant_api.PendingView.model_fields["awaiting"].annotation, assistant_pb2.Awaiting,
         "AWAITING_"),
    ],
)  # fmt: skip
def test_every_value_of_the_assistant_s_api_has_its_enum_value(
    literal: Any, enum: Any, prefix: str
) -> None:
    values = set(get_args(literal))
    assert values
    names = {n.removeprefix(prefix) for n in enum.DESCRIPTOR.values_by_name} - {"UNSPECIFIED"}
    assert names == {v.upper() for v in values}


def test_a_turn_maps_with_its_reply_pending_choice_and_hand_off() -> None:
    message = {
        "seq": 2, "sender": "assistant", "kind": "ask", "text": "Which loan?",
        "at": "2026-12-06T10:00:00+00:00", "intent": "loan.next_installment",
        "article_id": None, "confidence": 0.91, "blocked": False,
    }  # fmt: skip
    turn = convert.assistant_turn(
        {
            "conversation_id": "c", "state": "open", "with_person": False,
            "messages": [message | {"seq": 1, "sender": "customer", "kind": "question"}, message],
            "reply": message,
            "pending": {"intent": "loan.next_installment", "awaiting": "slot", "slot": "loan_id",
                        "options": [{"value": "1", "label": "Loan …42"}]},
            "handoff": {"handoff_id": "h", "state": "claimed"},
        }
    )  # fmt: skip
    assert turn.state == assistant_pb2.CONVERSATION_STATE_OPEN
    assert [m.sender for m in turn.messages] == [
        assistant_pb2.MESSAGE_SENDER_CUSTOMER, assistant_pb2.MESSAGE_SENDER_ASSISTANT
    ]  # fmt: skip
    assert turn.reply.kind == assistant_pb2.MESSAGE_KIND_ASK and turn.reply.confidence == 0.91
    assert turn.pending.awaiting == assistant_pb2.AWAITING_SLOT
    assert turn.pending.options[0].label == "Loan …42"
    assert turn.handoff.state == assistant_pb2.HANDOFF_STATE_CLAIMED
    quiet = convert.assistant_turn(
        {"conversation_id": "c", "state": "open", "with_person": True, "messages": [],
         "reply": None, "pending": None, "handoff": None}
    )  # fmt: skip
    assert not quiet.HasField("reply") and not quiet.HasField("pending")
