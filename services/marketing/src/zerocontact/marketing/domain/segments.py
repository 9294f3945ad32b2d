"""The segment rule language: validated pydantic models, evaluated in Python (no eval).

A rule is one of:

- ``{"attr": "risk_grade", "op": ">=", "value": 3}`` — compares a profile attribute;
- ``{"count": "salary_paid", "window_days": 30, "op": ">=", "value": 1}`` — compares how
  many events of a kind the profile counted in the last ``window_days`` local days;
- ``{"all": [rule, ...]}`` / ``{"any": [rule, ...]}`` / ``{"not": rule}``.

Attributes and event kinds are closed lists, so a typo is a 422 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Attribute = Literal[
    "kyc_level",
    "risk_grade",
    "salary_month_minor",
    "salary_total_minor",
    "active_loans",
    "credit_limit_minor",
    "engagement_milli",
    "birth_year",
    "party_kind",
]
EventKind = Literal[
    "salary_paid",
    "loan_applied",
    "loan_approved",
    "loan_accepted",
    "loan_repaid",
    "offer_delivered",
    "offer_opened",
    "offer_clicked",
    "offer_converted",
    "studio_joined",
    "studio_card_clicked",
]
Op = Literal["==", "!=", "<", "<=", ">", ">="]
MAX_WINDOW_DAYS = 90


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributeRule(_Rule):
    """Compares a profile attribute with a constant (a missing attribute never matches)."""

    attr: Attribute
    op: Op
    value: int | str


class CountRule(_Rule):
    """Compares a windowed event count with a constant."""

    count: EventKind
    window_days: int = Field(ge=1, le=MAX_WINDOW_DAYS)
    op: Op
    value: int = Field(ge=0)


class AllRule(_Rule):
    """Every sub-rule matches."""

    all: list[Rule] = Field(min_length=1, max_length=50)


class AnyRule(_Rule):
    """At least one sub-rule matches."""

    any: list[Rule] = Field(min_length=1, max_length=50)


class NotRule(_Rule):
    """The sub-rule does not match."""

    not_: Rule = Field(alias="not")


Rule = Annotated[AttributeRule | CountRule | AllRule | AnyRule | NotRule, Field()]
RULE = TypeAdapter(Rule)


@dataclass
class Facts:
    """What a rule sees of a profile: attributes and daily event counts (YYYYMMDD)."""

    attributes: dict[str, int | str | None] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def _compare(left: int | str, op: str, right: int | str) -> bool:
    if isinstance(left, str) != isinstance(right, str):
        return False
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    if op == ">":
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def window_count(facts: Facts, kind: str, days: int, now: datetime, time_zone: str) -> int:
    """Events of ``kind`` counted on the ``days`` local days ending today."""
    today = now.astimezone(ZoneInfo(time_zone)).date()
    first = (today - timedelta(days=days - 1)).strftime("%Y%m%d")
    last = today.strftime("%Y%m%d")
    return sum(n for day, n in facts.counts.get(kind, {}).items() if first <= day <= last)


def matches(rule: Rule, facts: Facts, *, now: datetime, time_zone: str = "Asia/Shanghai") -> bool:
    """Whether ``facts`` satisfy ``rule`` at ``now``."""
    if isinstance(rule, AttributeRule):
        value = facts.attributes.get(rule.attr)
        return value is not None and _compare(value, rule.op, rule.value)
    if isinstance(rule, CountRule):
        counted = window_count(facts, rule.count, rule.window_days, now, time_zone)
        return _compare(counted, rule.op, rule.value)
    if isinstance(rule, AllRule):
        return all(matches(r, facts, now=now, time_zone=time_zone) for r in rule.all)
    if isinstance(rule, AnyRule):
        return any(matches(r, facts, now=now, time_zone=time_zone) for r in rule.any)
    return not matches(rule.not_, facts, now=now, time_zone=time_zone)


def membership_changes(
    rules: dict[str, Rule], facts: Facts, current: set[str], *, now: datetime
) -> tuple[set[str], set[str]]:
    """(joined, left): segments whose rule now matches but the profile is not in, and back."""
    now_in = {sid for sid, rule in rules.items() if matches(rule, facts, now=now)}
    return now_in - current, (current & set(rules)) - now_in
