"""How an owning service's answer becomes the outcome of an action: its problem title is the
refusal, step-up is its own outcome, 5xx and 429 are "unavailable" (nothing known to be done)."""

from __future__ import annotations

import httpx
import pytest

from zerocontact.assistant.backends import _called
from zerocontact.assistant.handlers.conversations import _language


def problem(status: int, title: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": f"urn:zerocontact:problem:{title}", "title": title, "status": status},
        headers={"content-type": "application/problem+json"},
    )


def test_a_success_carries_the_body() -> None:
    called = _called(httpx.Response(200, json={"state": "APPROVED"}))
    assert called.ok and called.body == {"state": "APPROVED"}


@pytest.mark.parametrize(
    ("response", "outcome", "refusal"),
    [
        (problem(404, "not_found"), "refused", "not_found"),
        (problem(403, "not_your_application"), "refused", "not_your_application"),
        (problem(403, "step_up_required"), "step_up_required", "step_up_required"),
        (problem(409, "conflict"), "refused", "conflict"),
        (problem(503, "party_not_yet_known"), "unavailable", "party_not_yet_known"),
        (problem(429, "throttled"), "unavailable", "throttled"),
        (httpx.Response(502, text="bad gateway"), "unavailable", "unavailable"),
        (httpx.Response(418, text="teapot"), "refused", "http_418"),
    ],
)
def test_a_refusal_keeps_the_owning_services_code(
    response: httpx.Response, outcome: str, refusal: str
) -> None:
    called = _called(response)
    assert (called.outcome, called.refusal, called.ok) == (outcome, refusal, False)


@pytest.mark.parametrize(
    ("text", "understood", "current", "answer_in"),
    [
        ("下一期还多少钱", "zh", "en", "zh"),
        ("查询申请 0190f3a2-7c41-7b2e-9a11-3c5d2e8f4b60 的状态", "en", "en", "zh"),
        ("how much is my next installment", "en", "zh", "en"),
        ("2", "en", "zh", "zh"),
        ("0190f3a2-7c41-7b2e-9a11-3c5d2e8f4b60", "en", "zh", "zh"),
    ],
)
def test_the_answer_is_in_the_messages_language_unless_it_has_no_words(
    text: str, understood: str, current: str, answer_in: str
) -> None:
    assert _language(text, understood, current) == answer_in
