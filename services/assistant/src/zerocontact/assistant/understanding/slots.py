"""Slots found in a message: the ids a customer pastes (loan, application, payroll batch) and an
amount of money."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from zerocontact.assistant.understanding.intents import ACTIONS

# Ids are UUIDs; a Chinese character next to one is a word character too, so no \b.
_UUID = re.compile(
    r"(?<![0-9a-f-])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f-])"
)
# The word before an id that says what it is, within a few characters.
_CUES = (
    ("batch_id", re.compile(r"(批次|批号|batch)\W{0,3}(号|编号|no\.?|number|id)?\W{0,3}$")),
    ("application_id", re.compile(r"(申请|application)\W{0,3}(号|编号|no\.?|number|id)?\W{0,3}$")),
    ("loan_id", re.compile(r"(贷款|借款|loan)\W{0,3}(号|编号|no\.?|number|id)?\W{0,3}$")),
)
_AMOUNT = re.compile(
    r"(?:[¥￥]|rmb|cny)\s*(\d[\d,]*(?:\.\d{1,2})?)"
    r"|(\d[\d,]*(?:\.\d{1,2})?)\s*(?:元|块钱|块|yuan|rmb|cny)"
)


def extract(text: str, intent: str) -> dict[str, str]:
    """The slots in normalised ``text``; an id without a cue takes the slot ``intent`` needs."""
    slots: dict[str, str] = {}
    for match in _UUID.finditer(text):
        before = text[max(0, match.start() - 16) : match.start()]
        name = next((n for n, cue in _CUES if cue.search(before)), None)
        name = name or ACTIONS.get(intent) or "reference_id"
        slots.setdefault(name, match.group())
    amount = _AMOUNT.search(_UUID.sub(" ", text))
    if amount:
        try:
            value = Decimal((amount.group(1) or amount.group(2)).replace(",", ""))
        except InvalidOperation:
            value = None
        if value is not None and value > 0:
            slots["amount"] = str(value)
    return slots
