"""Masking of personal data and AES-GCM field encryption with blind indexes."""

from __future__ import annotations

import os

import pytest

from zerocontact.platform.pii import (
    DecryptionError,
    FieldCipher,
    mask_card,
    mask_email,
    mask_national_id,
    mask_phone,
)


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613812345678", "+86*******5678"),
        ("+86 138 1234 5678", "+86*******5678"),
        ("+14155552671", "+1******2671"),
        ("+85291234567", "+852****4567"),
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("021555", "**1555"),
    ],
)
def test_mask_phone_keeps_country_code_and_last_four(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_mask_card_keeps_first_six_and_last_four() -> None:
    assert mask_card("6222021234567890123") == "622202*********0123"
    assert mask_card("4111 1111 1111 1111") == "411111******1111"
    assert mask_card("12345") == "*2345"


def test_mask_national_id_keeps_first_three_and_last_four() -> None:
    assert mask_national_id("11010519491231002X") == "110***********002X"
    assert mask_national_id("11010519491231002x") == "110***********002X"
    assert mask_national_id("1234567") == "*******"


def test_mask_email_hides_the_local_part_and_its_length() -> None:
    assert mask_email("zhang.san@example.com") == "z***@example.com"
    assert mask_email("a@b.cn") == "a***@b.cn"
    assert mask_email("not-an-email") == "***"


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher(os.urandom(32), index_key=os.urandom(32))


def test_encrypt_round_trip_with_key_id_and_random_nonce(cipher: FieldCipher) -> None:
    token = cipher.encrypt("11010519491231002X", context="customer.national_id")
    again = cipher.encrypt("11010519491231002X", context="customer.national_id")
    assert token.startswith("v1:")
    assert "11010519491231002X" not in token
    assert token != again  # fresh nonce each time
    assert cipher.decrypt(token, context="customer.national_id") == "11010519491231002X"
    assert "=" not in token and "+" not in token and "/" not in token  # base64url, no padding


def test_ciphertext_does_not_decrypt_in_another_context(cipher: FieldCipher) -> None:
    token = cipher.encrypt("13812345678", context="customer.phone")
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, context="customer.national_id")


def test_tampered_or_foreign_tokens_are_refused(cipher: FieldCipher) -> None:
    token = cipher.encrypt("secret", context="c")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    other = FieldCipher(os.urandom(32), index_key=os.urandom(32))
    for bad in (flipped, "v1:", "nonsense", "v9:" + token[3:], other.encrypt("x", context="c")):
        with pytest.raises(DecryptionError):
            cipher.decrypt(bad, context="c")


def test_rotation_decrypts_old_tokens_and_flags_them() -> None:
    old_key, new_key, index_key = os.urandom(32), os.urandom(32), os.urandom(32)
    old = FieldCipher(old_key, index_key=index_key, key_id="v1")
    token = old.encrypt("6222021234567890123", context="card")
    rotated = FieldCipher(new_key, index_key=index_key, key_id="v2", previous_keys={"v1": old_key})
    assert rotated.decrypt(token, context="card") == "6222021234567890123"
    assert rotated.needs_rotation(token)
    fresh = rotated.encrypt("6222021234567890123", context="card")
    assert fresh.startswith("v2:") and not rotated.needs_rotation(fresh)


def test_blind_index_is_deterministic_keyed_and_normalised(cipher: FieldCipher) -> None:
    a = cipher.blind_index("11010519491231002X")
    assert a == cipher.blind_index(" 11010519491231002x ")
    assert a != cipher.blind_index("110105194912310010")
    assert len(a) == 64 and "11010519491231002X" not in a
    other = FieldCipher(os.urandom(32), index_key=os.urandom(32))
    assert other.blind_index("11010519491231002X") != a


@pytest.mark.parametrize(
    ("key", "index_key"),
    [(b"short", b"i" * 32), (b"k" * 32, b"short"), (b"k" * 32, b"k" * 32)],
)
def test_bad_keys_are_refused(key: bytes, index_key: bytes) -> None:
    with pytest.raises(ValueError):
        FieldCipher(key, index_key=index_key)
