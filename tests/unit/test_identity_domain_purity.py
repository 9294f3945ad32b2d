"""Identity's domain modules stay free of I/O frameworks, even transitively."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "zerocontact.identity.domain.authentication",
    "zerocontact.identity.domain.errors",
    "zerocontact.identity.domain.events",
    "zerocontact.identity.domain.kyc",
    "zerocontact.identity.domain.parties",
    "zerocontact.identity.trust.domain",
    "zerocontact.identity.trust.errors",
    "zerocontact.identity.trust.merkle",
    "zerocontact.identity.trust.treehead",
]
FRAMEWORKS = ("fastapi", "pymongo", "aiokafka", "grpc", "faust")


@pytest.mark.parametrize("module", PURE)
def test_a_domain_module_imports_no_framework(module: str) -> None:
    # A fresh interpreter: this test process has imported all of them already.
    probe = f"import sys, {module}; print(*[x for x in {FRAMEWORKS!r} if x in sys.modules])"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == [], f"{module} pulls in {found}"
