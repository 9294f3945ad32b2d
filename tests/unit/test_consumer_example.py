"""examples/consumer_loan_events.py without a broker: exact amounts, one line per ``ce_id``, an
event newer than the contracts logged and skipped, an undecodable record logged as an error."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from zerocontact.loan.v1 import events_pb2

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumer_loan_events.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("consumer_loan_events", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def record(value: bytes, ce_id: str, ce_type: str, offset: int = 0) -> SimpleNamespace:
    headers = [("ce_id", ce_id.encode()), ("ce_type", ce_type.encode())]
    return SimpleNamespace(
        topic="loan.events.v1", partition=0, offset=offset, key=b"p-1", value=value,
        headers=headers,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("currency", "minor", "shown"),
    [
        ("CNY", 5_000_050, "CNY 50000.50"),
        ("CNY", 10, "CNY 0.10"),
        ("CNY", -1, "CNY -0.01"),
        ("JPY", 5000, "JPY 5000"),
        ("KWD", 1234, "KWD 1.234"),
        ("XTS", 12, "XTS 12 minor units"),  # not in its table: shown raw, never guessed
    ],
)
def test_money_is_exact(currency: str, minor: int, shown: str) -> None:
    assert example.money(example.money_pb2.Money(currency_code=currency, minor_units=minor)) == (
        shown
    )


def test_one_line_per_event_id_and_unknown_cases_skipped(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    event = events_pb2.LoanEvent()
    e = event.loan_settled
    e.loan_id, e.party_id, e.early_payoff = "loan-1", "p-1", True
    settled = record(event.SerializeToString(), "id-1", e.DESCRIPTOR.full_name)
    future = record(b"\x9a\x06\x00", "id-2", "zerocontact.loan.v1.LoanRestructured", offset=2)
    poison = record(b"\x0a\x05ab", "id-3", e.DESCRIPTOR.full_name, offset=3)  # cut short
    printer = example.LoanEventPrinter()

    with caplog.at_level(logging.INFO):
        for r in (settled, settled, future, poison):
            printer.handle(r)

    assert capsys.readouterr().out == "settled    loan=loan-1 party=p-1 early=True\n"
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert logged[:2] == [
        ("INFO", "duplicate ce_id=id-1 skipped (at-least-once delivery)"),
        (
            "WARNING",
            "unknown event skipped: ce_type=zerocontact.loan.v1.LoanRestructured ce_id=id-2",
        ),
    ]
    assert logged[2][0] == "ERROR" and logged[2][1].startswith("undecodable record at 0/3: ")
    assert len(logged) == 3
