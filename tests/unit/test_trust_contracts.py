"""Contract rendering, script steps, retention and the signing preconditions (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from zerocontact.identity.trust import domain
from zerocontact.identity.trust.errors import ContractStateError, FaceVerificationRequired
from zerocontact.identity.trust.treehead import canonical_json

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_render_fills_every_placeholder_and_refuses_missing_or_unknown_fields() -> None:
    body = "Borrower ${who} owes ${amount} fen."
    assert domain.template_fields(body) == {"who", "amount"}
    assert domain.render(body, {"who": "c1", "amount": "100"}) == "Borrower c1 owes 100 fen."
    with pytest.raises(domain.InvalidTemplate) as missing:
        domain.render(body, {"who": "c1"})
    assert missing.value.context == {"missing": ["amount"], "unknown": []}
    with pytest.raises(domain.InvalidTemplate):
        domain.render(body, {"who": "c1", "amount": "1", "extra": "x"})
    with pytest.raises(domain.InvalidTemplate):
        domain.template_fields("broken ${")


def test_script_steps_must_be_in_order_within_the_recording() -> None:
    script = ["a", "b"]
    ok = [domain.ScriptStep("a", 0), domain.ScriptStep("b", 900)]
    domain.check_steps(ok, script=script, duration_ms=1000)
    for bad, duration in (
        ([domain.ScriptStep("b", 0), domain.ScriptStep("a", 900)], 1000),
        ([domain.ScriptStep("a", 0)], 1000),
        ([domain.ScriptStep("a", 500), domain.ScriptStep("b", 100)], 1000),
        (ok, 800),
    ):
        with pytest.raises(domain.InvalidTemplate):
            domain.check_steps(bad, script=script, duration_ms=duration)


def test_retention_per_product_with_a_default() -> None:
    days = {"default": 10, "wealth": 100}
    assert domain.retain_until("wealth", stored_at=NOW, retention_days=days) == NOW + timedelta(100)
    assert domain.retain_until("loan", stored_at=NOW, retention_days=days) == NOW + timedelta(10)


def test_signing_needs_a_recent_live_face_verification() -> None:
    fresh = domain.FaceFacts("v1", NOW - timedelta(seconds=30), 0.1, True)
    assert domain.check_face_recent(fresh, now=NOW, max_age_s=600) is fresh
    with pytest.raises(FaceVerificationRequired):
        domain.check_face_recent(None, now=NOW, max_age_s=600)
    with pytest.raises(FaceVerificationRequired):
        domain.check_face_recent(
            domain.FaceFacts("v1", NOW - timedelta(seconds=601), 0.1, True), now=NOW,
            max_age_s=600,
        )  # fmt: skip
    with pytest.raises(FaceVerificationRequired):
        domain.check_face_recent(domain.FaceFacts("v1", NOW, 0.1, False), now=NOW, max_age_s=600)
    with pytest.raises(ContractStateError):
        domain.ensure_draft("SIGNED")


def test_the_evidence_package_is_canonical_and_holds_no_personal_data() -> None:
    package = domain.evidence_package(
        contract_id="k1", template_id="t1", contract_sha256="ab" * 32, signer="c1",
        auth=domain.AuthenticationFacts("AAL2", ("pwd", "otp"), NOW, "s1"),
        face=domain.FaceFacts("v1", NOW, 0.07184, True), dual_recording_sha256=None,
        signed_at=NOW,
    )  # fmt: skip
    leaf = canonical_json(package)
    assert leaf == canonical_json(json.loads(leaf))
    assert b" " not in leaf and leaf.startswith(b'{"authentication":')
    assert package["signer"] == "customer:c1"
    assert package["face_verification"]["distance"] == 0.0718
