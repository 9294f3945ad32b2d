"""Identity's pure rules: validation, KYC transitions, lockout back-off, TOTP, tokens."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from stdnum.cn import ric, uscc

from zerocontact.identity.domain import kyc, parties
from zerocontact.identity.domain.authentication import (
    Aal,
    LockoutPolicy,
    Method,
    SmsChallenge,
    Throttle,
    assurance,
    code_digest,
    match_totp,
    new_recovery_codes,
    normalise_recovery_code,
)
from zerocontact.identity.domain.errors import InvalidIdentityData, KycTransitionRefused
from zerocontact.identity.notifier import SmsGatewaySimulator, seal_for_gateway
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims, thumbprint
from zerocontact.platform.money import Money

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RID = "11010519491231002X"  # the standard's own example


def test_resident_id_is_validated_by_checksum_and_date() -> None:
    assert parties.normalise_resident_id(RID.lower()) == RID
    with pytest.raises(InvalidIdentityData):
        parties.normalise_resident_id("110105194912310021")
    body = "11010519490230001"  # 30 February
    with pytest.raises(InvalidIdentityData):
        parties.normalise_resident_id(body + ric.calc_check_digit(body + "0"))
    parties.check_birth_date(RID, date(1949, 12, 31))
    with pytest.raises(InvalidIdentityData):
        parties.check_birth_date(RID, date(1949, 12, 30))


def test_phone_must_be_a_valid_mobile_and_comes_back_in_e164() -> None:
    assert parties.normalise_phone("138 1234 5678") == "+8613812345678"
    for bad in ("+8612345678901", "+861065529988", "hello"):
        with pytest.raises(InvalidIdentityData):
            parties.normalise_phone(bad)


def test_credit_code_checksum() -> None:
    body = "91110105123456789"
    good = body + uscc.calc_check_digit(body)
    assert parties.normalise_credit_code(good.lower()) == good
    with pytest.raises(InvalidIdentityData):
        parties.normalise_credit_code(body + ("0" if good[-1] != "0" else "1"))


def _customer() -> parties.Customer:
    return parties.register_customer(
        customer_id="c1", name="李小龙", resident_id=RID, phone="+8613812345678",
        birth_date=date(1949, 12, 31), address="北京市朝阳区建国路88号", now=NOW,
    )  # fmt: skip


def test_a_registered_customer_is_basic_with_the_step_recorded_and_data_masked() -> None:
    c = _customer()
    assert c.kyc_level == kyc.KycLevel.BASIC
    assert [(t.from_level, t.to_level, t.actor) for t in c.kyc_history] == [
        (kyc.KycLevel.NONE, kyc.KycLevel.BASIC, "system")
    ]
    assert c.id_number_masked == "110***********002X"
    assert c.phone_masked == "+86*******5678"
    assert c.address_masked == "北京市朝阳区****"


def test_levels_rise_one_step_at_a_time_with_a_reason() -> None:
    with pytest.raises(KycTransitionRefused):
        kyc.transition(
            kyc.KycLevel.BASIC, kyc.KycLevel.ENHANCED, actor="a", reason="r", evidence="", now=NOW
        )
    with pytest.raises(KycTransitionRefused):
        kyc.transition(
            kyc.KycLevel.BASIC, kyc.KycLevel.VERIFIED, actor="a", reason=" ", evidence="", now=NOW
        )
    step = kyc.transition(
        kyc.KycLevel.BASIC, kyc.KycLevel.VERIFIED, actor="a", reason="r", evidence="e", now=NOW
    )
    assert step.to_level == kyc.KycLevel.VERIFIED and step.at == NOW


def test_an_enterprise_is_verified_only_with_a_verified_representative() -> None:
    rep = _customer()
    capital = Money.of("1000000", "CNY")
    body = "91110105123456789"
    code = body + uscc.calc_check_digit(body)
    e = parties.register_enterprise(
        enterprise_id="e1", name="某公司", credit_code=code, representative=rep,
        business_category="F", registered_capital=capital, now=NOW,
    )  # fmt: skip
    assert e.kyc_level == kyc.KycLevel.BASIC
    with pytest.raises(KycTransitionRefused):
        kyc.enterprise_transition(
            e.kyc_level, kyc.KycLevel.VERIFIED, representative_level=rep.kyc_level,
            actor="operator:x", reason="r", evidence="e", now=NOW,
        )  # fmt: skip
    rep.kyc_level = kyc.KycLevel.VERIFIED
    verified = parties.register_enterprise(
        enterprise_id="e2", name="某公司", credit_code=code, representative=rep,
        business_category="F", registered_capital=capital, now=NOW,
    )  # fmt: skip
    assert verified.kyc_level == kyc.KycLevel.VERIFIED
    assert verified.kyc_history[-1].evidence == f"representative={rep.id}"


def test_lockout_backs_off_exponentially_and_a_success_resets_it() -> None:
    policy = LockoutPolicy(threshold=3, base_s=30, max_s=100)
    t = Throttle()
    assert t.record_failure(policy, NOW) is None
    assert t.record_failure(policy, NOW) is None
    assert t.record_failure(policy, NOW) == NOW + timedelta(seconds=30)
    assert t.is_locked(NOW + timedelta(seconds=29)) and t.retry_after_s(NOW) == 30
    later = NOW + timedelta(seconds=31)
    assert not t.is_locked(later)
    for _ in range(2):
        assert t.record_failure(policy, later) is None
    assert t.record_failure(policy, later) == later + timedelta(seconds=60)
    much_later = later + timedelta(seconds=61)
    for _ in range(2):
        t.record_failure(policy, much_later)
    assert t.record_failure(policy, much_later) == much_later + timedelta(seconds=100)  # capped
    t.record_success()
    assert (t.failures, t.locks, t.locked_until) == (0, 0, None)


def test_assurance_needs_a_password_and_a_distinct_second_factor() -> None:
    assert assurance({Method.PASSWORD}) == Aal.AAL1
    assert assurance({Method.TOTP}) == Aal.AAL1
    assert assurance({Method.PASSWORD, Method.TOTP}) == Aal.AAL2
    assert assurance({Method.PASSWORD, Method.SMS}) == Aal.AAL2


def test_totp_accepts_drift_and_refuses_replay() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(NOW)
    assert match_totp(secret, totp.at(NOW), now=NOW, last_step=0) == step
    assert match_totp(secret, totp.at(NOW, counter_offset=1), now=NOW, last_step=0) == step + 1
    assert match_totp(secret, totp.at(NOW), now=NOW, last_step=step) is None  # used already
    assert match_totp(secret, totp.at(NOW, counter_offset=3), now=NOW, last_step=0) is None
    assert match_totp(secret, "12345", now=NOW, last_step=0) is None


def test_recovery_codes_are_distinct_and_typed_back_loosely() -> None:
    codes = new_recovery_codes()
    assert len(set(codes)) == 10
    assert normalise_recovery_code(codes[0].upper().replace("-", " ")) == codes[0]


def test_sms_challenge_keeps_only_a_digest() -> None:
    challenge = SmsChallenge(
        "ch1", "c1", code_digest("123456", salt="ch1"), NOW + timedelta(minutes=5), 3
    )
    assert "123456" not in challenge.code_digest
    assert challenge.accepts("123456", NOW)
    assert not challenge.accepts("123457", NOW)
    assert not challenge.accepts("123456", NOW + timedelta(minutes=6))


def test_sealed_sms_opens_only_for_the_gateway_and_its_delivery() -> None:
    gateway = SmsGatewaySimulator()
    sealed = seal_for_gateway(
        gateway.public_key,
        b'{"to":"+8613812345678","template":"t","code":"123456"}',
        delivery_id="d1",
    )
    assert b"123456" not in sealed
    assert gateway.open(sealed, delivery_id="d1").code == "123456"
    with pytest.raises(Exception):  # noqa: B017 - any failure to open is the point
        gateway.open(sealed, delivery_id="d2")
    with pytest.raises(Exception):  # noqa: B017
        SmsGatewaySimulator(X25519PrivateKey.generate()).open(sealed, delivery_id="d1")


def test_signing_keys_from_a_seed_publish_current_and_previous_keys() -> None:
    import base64

    from cryptography.hazmat.primitives import serialization

    seed = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    old = Ed25519PrivateKey.generate().public_key()
    pem = old.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    keys = SigningKeys.from_config(pem=None, seed=seed, previous_pems=[pem])
    assert keys.kid == SigningKeys.from_config(pem=None, seed=seed).kid  # deterministic
    assert [k["kid"] for k in keys.jwks()["keys"]] == [keys.kid, thumbprint(old)]
    claims = access_claims(
        AccessGrant("c1", "s1", Aal.AAL2, (Method.PASSWORD, Method.TOTP), NOW),
        issuer="iss", audience="aud", now=NOW, ttl=timedelta(minutes=5),
    )  # fmt: skip
    assert claims["aal"] == "AAL2" and claims["amr"] == ["pwd", "otp"]
    assert claims["exp"] - claims["iat"] == 300 and claims["auth_time"] == int(NOW.timestamp())
    with pytest.raises(ValueError):
        SigningKeys.from_config(pem=None, seed=seed[:-4])
