"""Server reflection resolving a method's full name (what ghz asks for)."""

from __future__ import annotations

import pytest

from zerocontact.gateway.app import ReflectionPool


def test_reflection_resolves_a_method_to_its_services_file() -> None:
    pool = ReflectionPool()
    loan_file = "zerocontact/gateway/v1/loan.proto"
    assert pool.FindFileContainingSymbol("zerocontact.gateway.v1.LoanService").name == loan_file
    method = "zerocontact.gateway.v1.LoanService.GetLoan"
    assert pool.FindFileContainingSymbol(method).name == loan_file
    for unknown in ("zerocontact.gateway.v1.LoanService.Nope", "nope", "a.b.c"):
        with pytest.raises(KeyError):
            pool.FindFileContainingSymbol(unknown)
