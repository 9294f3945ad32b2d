"""Personal-data keys from the environment, including a rotation."""

from __future__ import annotations

import base64
import json
import os

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import PersonalDataSettings, ServiceSettings


class _Settings(ServiceSettings, PersonalDataSettings):
    model_config = SettingsConfigDict(env_prefix="ZC_TEST_", extra="ignore")


def _key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def test_keys_come_from_the_environment_and_rotation_keeps_old_values_readable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_key, index_key = _key(), _key()
    monkeypatch.setenv("ZC_TEST_PII_KEY", old_key)
    monkeypatch.setenv("ZC_TEST_PII_INDEX_KEY", index_key)
    before = _Settings().field_cipher()
    token = before.encrypt("110101199003071234", context="customer.national_id")
    assert token.startswith("v1:")

    monkeypatch.setenv("ZC_TEST_PII_KEY", _key())
    monkeypatch.setenv("ZC_TEST_PII_KEY_ID", "v2")
    monkeypatch.setenv("ZC_TEST_PII_PREVIOUS_KEYS", json.dumps({"v1": old_key}))
    after = _Settings().field_cipher()
    assert after.decrypt(token, context="customer.national_id") == "110101199003071234"
    assert after.encrypt("x", context="c").startswith("v2:")
    assert after.blind_index("13812345678") == before.blind_index("13812345678")


def test_missing_keys_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZC_TEST_PII_KEY", raising=False)
    monkeypatch.delenv("ZC_TEST_PII_INDEX_KEY", raising=False)
    with pytest.raises(ValidationError, match="pii_key"):
        _Settings()  # type: ignore[call-arg]
