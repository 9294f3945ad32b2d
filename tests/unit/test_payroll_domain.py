"""Payroll's pure rules: cards, batch validation, CSV, tax withholding, sweep and yield."""

from __future__ import annotations

from decimal import Decimal

import pytest

from zerocontact.payroll.domain.batches import (
    BatchLimits,
    MalformedCsv,
    RawItem,
    batch_status,
    csv_text,
    parse_csv,
    validate_batch,
)
from zerocontact.payroll.domain.cards import InvalidCard, luhn_complete, parse_card
from zerocontact.payroll.domain.sweep import daily_yield, redemption_needed, sweep_amount
from zerocontact.payroll.domain.tax import withhold_labour_remuneration
from zerocontact.payroll.iso20022 import MalformedMessage, parse_pain001
from zerocontact.platform.money import Money

LIMITS = BatchLimits(Money.of("50000.00", "CNY"))
ICBC = luhn_complete("622202123456789012")
CCB = luhn_complete("621700123456789012")


def cny(text: str) -> Money:
    return Money.of(text, "CNY")


def test_card_is_luhn_checked_masked_and_named_by_issuer() -> None:
    card = parse_card(ICBC[:4] + " " + ICBC[4:])
    assert card.number == ICBC and card.bank == "ICBC"
    assert card.masked == ICBC[:6] + "*" * 9 + ICBC[-4:]
    wrong = ICBC[:-1] + str((int(ICBC[-1]) + 1) % 10)
    with pytest.raises(InvalidCard):
        parse_card(wrong)
    with pytest.raises(InvalidCard):
        parse_card("12345")


def test_valid_batch_yields_instructions_and_control_sum() -> None:
    items = [RawItem("张三", ICBC, "100.50"), RawItem("李四", CCB, "99.50")]
    report = validate_batch(
        "b1", items, declared_count=2, declared_sum=Decimal("200.00"), limits=LIMITS
    )
    assert report.ok and report.control_sum == cny("200.00")
    assert [i.end_to_end_id for i in report.instructions] == ["b1-000001", "b1-000002"]


@pytest.mark.parametrize(
    ("items", "count", "total", "batch_problems", "item_codes"),
    [
        ([RawItem("A", ICBC, "1.00")], 1, Decimal("1.01"), ["control_sum_mismatch"], []),
        ([RawItem("A", ICBC, "1.00")], 2, Decimal("1.00"), ["item_count_mismatch"], []),
        ([RawItem("A", ICBC, "50000.01")], 1, Decimal("50000.01"), [], ["amount_over_limit"]),
        (
            [RawItem("A", ICBC, "1"), RawItem("B", ICBC, "1")],
            2,
            Decimal(2),
            [],
            ["duplicate_payee"],
        ),
        ([RawItem("", ICBC, "1.001")], 1, None, [], ["invalid_name", "invalid_amount"]),
        ([], 0, Decimal(0), ["empty_batch"], []),
    ],
)
def test_bad_batches_are_reported_item_by_item(
    items: list[RawItem],
    count: int,
    total: Decimal | None,
    batch_problems: list[str],
    item_codes: list[str],
) -> None:
    report = validate_batch("b", items, declared_count=count, declared_sum=total, limits=LIMITS)
    assert not report.ok and report.instructions == []
    assert report.batch_problems == batch_problems
    assert [p.code for p in report.item_problems] == item_codes


def test_payslip_must_add_up() -> None:
    good = RawItem(
        "A",
        ICBC,
        "800.00",
        gross="1000.00",
        deductions={"income_tax": "50.00", "social_insurance": "150.00"},
    )
    report = validate_batch("b", [good], declared_count=1, declared_sum=None, limits=LIMITS)
    assert report.instructions[0].payslip.gross == cny("1000.00")
    bad = RawItem("A", ICBC, "800.00", gross="1000.00", deductions={"income_tax": "1.00"})
    report = validate_batch("b", [bad], declared_count=1, declared_sum=None, limits=LIMITS)
    assert [p.code for p in report.item_problems] == ["invalid_payslip"]


def test_csv_round_trip_and_malformed_files() -> None:
    items = [RawItem("张三", ICBC, "1.00", end_to_end_id="E1", deductions={})]
    (parsed,) = parse_csv(csv_text(items))
    assert (parsed.payee_name, parsed.card_number, parsed.amount) == ("张三", ICBC, "1.00")
    for text in ("", "name,card\n1,2\n", "payee_name,card_number,amount,colour\n"):
        with pytest.raises(MalformedCsv):
            parse_csv(text)
    (short,) = parse_csv("payee_name,card_number,amount\nA," + ICBC + "\n")
    assert short.amount == "malformed row"


@pytest.mark.parametrize(
    ("gross", "tax"),
    [
        ("800.00", "0.00"),
        ("3000.00", "440.00"),
        ("10000.00", "1600.00"),
        ("30000.00", "5200.00"),
        ("100000.00", "25000.00"),
    ],
)
def test_labour_remuneration_withholding_table(gross: str, tax: str) -> None:
    split = withhold_labour_remuneration(cny(gross))
    assert split.tax == cny(tax) and split.net == cny(gross) - cny(tax)


def test_sweep_keeps_threshold_and_upcoming_payroll_and_yield_rounds_down() -> None:
    assert sweep_amount(cny("1000"), threshold=cny("100"), committed=cny("300")) == cny("600")
    assert sweep_amount(cny("100"), threshold=cny("100"), committed=cny("1")) == cny("0")
    assert daily_yield(cny("1000000.00"), annual_rate=Decimal("0.018")) == cny("49.31")
    assert redemption_needed(cny("500"), wallet=cny("200"), holding=cny("1000")) == cny("300")
    assert redemption_needed(cny("500"), wallet=cny("200"), holding=cny("100")) == cny("100")


def test_group_status_follows_items() -> None:
    assert batch_status(3, 0, 0) == "ACSC"
    assert batch_status(2, 1, 0) == "PART"
    assert batch_status(0, 3, 0) == "RJCT"
    assert batch_status(1, 0, 2) == "PDNG"


def test_pain001_refuses_entities_and_other_documents() -> None:
    with pytest.raises(MalformedMessage):
        parse_pain001(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>')
    with pytest.raises(MalformedMessage):
        parse_pain001(b"<Document xmlns='urn:other'/>")
    with pytest.raises(MalformedMessage):
        parse_pain001(b"not xml")
