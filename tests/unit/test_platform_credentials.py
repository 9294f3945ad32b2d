"""The shared-credential dependency (``zerocontact.platform.auth.shared_credential``): the right
value passes; a missing, empty or wrong one is refused with a problem that never echoes it; an
empty setting admits nobody; services choose their own refusal."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr
from starlette.requests import Request

from zerocontact.platform.auth import CredentialRequired, shared_credential
from zerocontact.platform.errors import DomainError
from zerocontact.platform.http import http_status

SECRET = "s3cret-operator-key-0123456789abcdef"


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": []})


def _check(setting: str = SECRET, **kwargs: Any) -> Any:
    return shared_credential("X-Operator-Key", lambda _: SecretStr(setting), **kwargs)


async def test_the_configured_value_passes() -> None:
    assert await _check()(_request(), SECRET) is None


@pytest.mark.parametrize(
    "presented", [None, "", SECRET[:-1], SECRET + "x", SECRET.upper(), "wrong-" + SECRET]
)
async def test_anything_else_is_a_403_that_does_not_echo_it(presented: str | None) -> None:
    with pytest.raises(CredentialRequired) as refused:
        await _check()(_request(), presented)
    assert http_status(refused.value) == 403 and refused.value.code == "credential_required"
    assert "X-Operator-Key" in refused.value.detail
    if presented:
        assert presented not in refused.value.detail and SECRET not in refused.value.detail


async def test_an_empty_setting_admits_nobody() -> None:
    with pytest.raises(CredentialRequired):
        await _check(setting="")(_request(), "")


async def test_a_service_keeps_its_own_refusal() -> None:
    class OperatorOnly(DomainError):
        status = 403
        code = "operator_only"

    check = _check(refusal=lambda: OperatorOnly("the admin API needs the operator credential"))
    with pytest.raises(OperatorOnly) as refused:
        await check(_request(), "nope")
    assert refused.value.detail == "the admin API needs the operator credential"


async def test_the_setting_is_read_per_request() -> None:
    """A rotated key (new settings on the app) takes effect without rebuilding the routes."""
    current = {"key": SECRET}
    check = shared_credential("X-Operator-Key", lambda _: SecretStr(current["key"]))
    await check(_request(), SECRET)
    current["key"] = SECRET + "-rotated"
    with pytest.raises(CredentialRequired):
        await check(_request(), SECRET)
    await check(_request(), SECRET + "-rotated")
