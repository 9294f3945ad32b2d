"""Money: exact construction, same-currency arithmetic, exact allocation, proto round trip."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocontact.platform.money import (
    CurrencyMismatch,
    InvalidAmount,
    Money,
    UnknownCurrency,
    currency_exponent,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.34", "CNY", 1234),
        (Decimal("0.01"), "USD", 1),
        ("1000", "JPY", 1000),
        ("1.234", "KWD", 1234),
        ("-5.5", "HKD", -550),
        (7, "EUR", 700),
        ("12.340", "CNY", 1234),  # trailing zeros are not extra precision
        ("1.5E+3", "CNY", 150000),
        ("12345E-2", "CNY", 12345),
        ("-0.00", "CNY", 0),
        ("1234567890123456789012345678.99", "CNY", 123456789012345678901234567899),  # 30 digits
        ("1." + "0" * 40, "CNY", 100),
    ],
)
def test_of_converts_major_units_to_minor_units(
    amount: Decimal | str | int, currency: str, minor: int
) -> None:
    assert Money.of(amount, currency) == Money(currency, minor)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("1.005", "CNY"),
        ("0.5", "JPY"),
        ("1.2345", "KWD"),
        ("abc", "CNY"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("", "CNY"),
        ("2.E111111111111", "CNY"),  # overflowed Decimal (the payroll CSV fuzzer)
        ("1E+999990", "CNY"),  # an int of a million digits
        ("1E-999999999", "CNY"),  # underflowed to 0
        ("12345678901234567890123456789", "CNY"),  # 31 digits of fen
    ],
)
def test_of_refuses_amounts_the_currency_cannot_hold(amount: str, currency: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.of(amount, currency)


def test_invalid_amount_is_a_value_error() -> None:
    assert issubclass(InvalidAmount, ValueError)


def test_of_refuses_floats() -> None:
    with pytest.raises(TypeError):
        Money.of(0.1, "CNY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money("CNY", 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money("CNY", True)


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        Money.of("1", "XYZ")
    assert currency_exponent("JPY") == 0


def test_to_decimal_has_the_currency_places() -> None:
    assert Money("CNY", 1234).to_decimal() == Decimal("12.34")
    assert str(Money("CNY", 5).to_decimal()) == "0.05"
    assert str(Money("JPY", 5).to_decimal()) == "5"
    assert str(Money("KWD", -1).to_decimal()) == "-0.001"
    assert str(Money("CNY", 100)) == "1.00 CNY"


def test_arithmetic_and_comparison_within_one_currency() -> None:
    a, b = Money.of("10.00", "CNY"), Money.of("2.50", "CNY")
    assert a + b == Money("CNY", 1250)
    assert a - b == Money("CNY", 750)
    assert -b == Money("CNY", -250)
    assert abs(-b) == b
    assert b < a and a > b and a >= a and b <= b
    assert sorted([a, b]) == [b, a]
    assert Money.zero("CNY").is_zero()


def test_mixing_currencies_raises() -> None:
    cny, usd = Money("CNY", 100), Money("USD", 100)
    with pytest.raises(CurrencyMismatch):
        _ = cny + usd
    with pytest.raises(CurrencyMismatch):
        _ = cny - usd
    with pytest.raises(CurrencyMismatch):
        _ = cny < usd
    assert cny != usd  # equality is defined across currencies: simply not equal


def test_split_70_30_gives_the_remainder_to_the_largest_fraction() -> None:
    assert Money("CNY", 1001).split([7, 3]) == [Money("CNY", 701), Money("CNY", 300)]
    assert Money("CNY", 5).split([7, 3]) == [Money("CNY", 4), Money("CNY", 1)]
    assert Money("CNY", 100).split([1, 1, 1]) == [
        Money("CNY", 34),
        Money("CNY", 33),
        Money("CNY", 33),
    ]
    assert Money("CNY", 10).split([Decimal("0.7"), Decimal("0.3")]) == [
        Money("CNY", 7),
        Money("CNY", 3),
    ]
    assert Money("CNY", -1001).split([7, 3]) == [Money("CNY", -701), Money("CNY", -300)]
    assert Money("CNY", 9).split([1, 0]) == [Money("CNY", 9), Money("CNY", 0)]


@pytest.mark.parametrize("ratios", [[], [0, 0], [-1, 2]])
def test_split_refuses_bad_ratios(ratios: list[int]) -> None:
    with pytest.raises(ValueError):
        Money("CNY", 100).split(ratios)


def test_split_refuses_float_ratios() -> None:
    with pytest.raises(TypeError):
        Money("CNY", 100).split([0.7, 0.3])  # type: ignore[list-item]


@given(
    minor=st.integers(min_value=-(10**15), max_value=10**15),
    ratios=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=8).filter(
        lambda r: sum(r) > 0
    ),
)
def test_split_parts_always_sum_exactly_and_stay_within_one_unit(
    minor: int, ratios: list[int]
) -> None:
    parts = Money("CNY", minor).split(ratios)
    assert sum(p.minor_units for p in parts) == minor
    total = sum(ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        exact = Decimal(minor) * ratio / total
        assert abs(Decimal(part.minor_units) - exact) < 1


def test_proto_round_trip() -> None:
    money_pb2 = pytest.importorskip(
        "zerocontact.common.v1.money_pb2",
        reason="generated protobuf modules missing: run `make proto` (proto/generate.py)",
    )
    money = Money.of("123.45", "CNY")
    message = money.to_proto()
    assert isinstance(message, money_pb2.Money)
    assert (message.currency_code, message.minor_units) == ("CNY", 12345)
    assert Money.from_proto(message) == money
    wire = money_pb2.Money.FromString(message.SerializeToString())
    assert Money.from_proto(wire) == money
