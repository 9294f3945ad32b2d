"""Personal data: masking for display and logs, AES-GCM field encryption, blind indexes.

Masks keep only what a person needs to recognise their own data (last digits, a card's
issuer prefix) and never the length-revealing middle of an e-mail address. Encrypted fields
carry a key id prefix so keys can rotate without re-encrypting everything at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DecryptionError",
    "FieldCipher",
    "mask_card",
    "mask_email",
    "mask_national_id",
    "mask_phone",
]

_MASK = "*"
_NONCE_BYTES = 12  # the size AES-GCM is specified and analysed for


def _country_code_length(digits: str) -> int:
    """Length of the ITU-T E.164 country calling code at the start of ``digits``.

    Calling codes are prefix-free: zones 1 and 7 use one digit, and within the other zones a
    fixed set of two-digit codes exists, every other code there has three digits.
    """
    if not digits:
        return 0
    if digits[0] in "17":
        return 1
    two_digit = {
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
        "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
        "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
        "95", "98",
    }  # fmt: skip
    return 2 if digits[:2] in two_digit else 3


def mask_phone(phone: str) -> str:
    """Mask a phone number, keeping the country code and the last 4 digits.

    ``"+8613812345678"`` -> ``"+86*******5678"``; an 11-digit Chinese mobile without country
    code keeps its 3-digit network prefix: ``"13812345678"`` -> ``"138****5678"``.
    Separators (spaces, dashes) are dropped from the masked form.
    """
    plus = phone.strip().startswith("+")
    digits = "".join(c for c in phone if c.isdigit())
    if plus:
        cc = _country_code_length(digits)
        national = digits[cc:]
        return f"+{digits[:cc]}{_keep_last(national, 4)}"
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}{_MASK * 4}{digits[-4:]}"
    return _keep_last(digits, 4)


def mask_card(card_number: str) -> str:
    """Mask a bank card number to its first 6 (issuer) and last 4 digits.

    ``"6222021234567890123"`` -> ``"622202*********0123"``. Numbers too short to be a card
    keep only their last 4 digits.
    """
    digits = "".join(c for c in card_number if c.isdigit())
    if len(digits) < 13:
        return _keep_last(digits, 4)
    return f"{digits[:6]}{_MASK * (len(digits) - 10)}{digits[-4:]}"


def mask_national_id(national_id: str) -> str:
    """Mask an identity document number to its first 3 and last 4 characters.

    A Chinese resident ID (18 characters, the last may be ``X``):
    ``"11010519491231002X"`` -> ``"110***********002X"``.
    """
    value = national_id.strip().upper()
    if len(value) <= 7:
        return _MASK * len(value)
    return f"{value[:3]}{_MASK * (len(value) - 7)}{value[-4:]}"


def mask_email(email: str) -> str:
    """Mask an e-mail address to its first character and domain: ``"z***@example.com"``.

    The local part always becomes three stars so the mask does not reveal its length.
    """
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        return _MASK * 3
    return f"{local[0]}{_MASK * 3}@{domain}"


def _keep_last(digits: str, keep: int) -> str:
    if len(digits) <= keep:
        return _MASK * len(digits)
    return f"{_MASK * (len(digits) - keep)}{digits[-keep:]}"


class DecryptionError(ValueError):
    """The token is malformed, uses an unknown key id, or fails authentication."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_key(text: str) -> bytes:
    """A key from its base64url text (padding optional), as settings and Secrets carry it."""
    try:
        return _b64decode(text.strip())
    except ValueError as exc:
        raise ValueError("a key must be base64url text") from exc


class FieldCipher:
    """AES-256-GCM encryption of single fields, plus HMAC-SHA256 blind indexes.

    Tokens look like ``v1:<base64url(nonce || ciphertext || tag)>``. The ``context`` (for
    example ``"customer.national_id"``) is bound as associated data, so a ciphertext copied
    into another field does not decrypt. Keys come from settings (32 bytes each); nothing here
    has a default key.
    """

    def __init__(
        self,
        key: bytes,
        *,
        index_key: bytes,
        key_id: str = "v1",
        previous_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        """``key`` encrypts new values under ``key_id``; ``previous_keys`` (key id -> key)
        still decrypt old ones during a rotation; ``index_key`` keys the blind index and must
        differ from every encryption key."""
        keys = {key_id: key, **(previous_keys or {})}
        keys[key_id] = key
        for kid, candidate in keys.items():
            if not isinstance(candidate, bytes) or len(candidate) != 32:
                raise ValueError(f"key {kid!r} must be 32 bytes")
            if not kid or ":" in kid:
                raise ValueError(f"key id {kid!r} must be non-empty and contain no ':'")
        if not isinstance(index_key, bytes) or len(index_key) < 32:
            raise ValueError("index_key must be at least 32 bytes")
        if index_key in keys.values():
            raise ValueError("index_key must differ from the encryption keys")
        self._key_id = key_id
        self._ciphers = {kid: AESGCM(k) for kid, k in keys.items()}
        self._index_key = index_key

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` with a fresh random nonce; ``context`` must match on decrypt."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._key_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        return f"{self._key_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, *, context: str) -> str:
        """Decrypt a token made by ``encrypt`` (under the current or a previous key)."""
        kid, sep, body = token.partition(":")
        cipher = self._ciphers.get(kid)
        if not sep or cipher is None:
            raise DecryptionError(f"unknown key id {kid!r}" if sep else "malformed token")
        try:
            raw = _b64decode(body)
        except ValueError:
            raise DecryptionError("malformed token") from None
        if len(raw) < _NONCE_BYTES + 16:
            raise DecryptionError("token too short")
        try:
            plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag:
            raise DecryptionError("authentication failed (wrong key or context)") from None
        return plain.decode("utf-8")

    def needs_rotation(self, token: str) -> bool:
        """True when ``token`` was encrypted under a key other than the current one."""
        return token.partition(":")[0] != self._key_id

    def blind_index(self, value: str) -> str:
        """Deterministic keyed hash of ``value`` for equality look-ups without decrypting.

        Values are normalised first (surrounding whitespace removed, upper-cased) so that a
        resident ID ending in ``x`` or ``X`` indexes the same. Returns 64 hex characters.
        """
        normalised = value.strip().upper().encode("utf-8")
        return hmac.new(self._index_key, normalised, hashlib.sha256).hexdigest()
