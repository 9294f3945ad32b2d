"""The ``zerocontact`` command's settings: the environment first, then the local suite's run
directory (``suite-env.json`` and ``local-secrets.json``); a gap is one error line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer

from zerocontact.gateway.settings import GatewaySettings
from zerocontact.platform.cli_support import LocalSuite, settings_or_exit

KEY = "k" * 43


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local suite's cache with the gateway's environment and keys, and a clean env."""
    for name in list(os.environ):
        if name.startswith(("ZC_GATEWAY_", "MONGODB_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZC_LOCAL_HOME", str(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    (run / "suite-env.json").write_text(json.dumps({
        "engines": {"MONGODB_URI": "mongodb://127.0.0.1:27999/"},
        "services": {"gateway": {
            "env": {"ZC_GATEWAY_TLS_CERT_FILE": "/suite/server.crt",
                    "ZC_GATEWAY_TLS_KEY_FILE": "/suite/server.key",
                    "ZC_GATEWAY_CLIENT_CA_FILE": "/suite/ca.crt"},
            "secrets": ["ZC_GATEWAY_CREDENTIAL_PEPPER", "ZC_GATEWAY_PII_KEY",
                        "ZC_GATEWAY_PII_INDEX_KEY"],
        }},
    }))  # fmt: skip
    (run / "local-secrets.json").write_text(json.dumps({
        "ZC_GATEWAY_CREDENTIAL_PEPPER": "p" * 43, "ZC_GATEWAY_PII_KEY": KEY,
        "ZC_GATEWAY_PII_INDEX_KEY": KEY, "ZC_LOAN_OPERATOR_KEY": "x" * 43,
    }))  # fmt: skip
    return tmp_path


def test_unset_settings_come_from_the_local_suite_and_the_environment_wins(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZC_GATEWAY_CLIENT_CA_FILE", "/mine/ca.crt")
    settings = settings_or_exit(GatewaySettings, service="gateway")
    assert settings.client_ca_file == "/mine/ca.crt"  # the environment's
    assert settings.tls_cert_file == "/suite/server.crt"  # the suite's
    assert settings.credential_pepper.get_secret_value() == "p" * 43
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27999/"


def test_only_the_named_service_gets_its_keys(home: Path) -> None:
    suite = LocalSuite.find()
    assert suite is not None
    assert "ZC_LOAN_OPERATOR_KEY" not in suite.environment("gateway")
    assert suite.environment() == {"MONGODB_URI": "mongodb://127.0.0.1:27999/"}


def test_a_gap_is_one_line_naming_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("ZC_GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZC_LOCAL_HOME", str(tmp_path / "no-suite"))
    monkeypatch.setenv("ZC_GATEWAY_CREDENTIAL_PEPPER", "short")
    with pytest.raises(typer.Exit):
        settings_or_exit(GatewaySettings, service="gateway")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "missing setting(s) ZC_GATEWAY_PII_KEY" in lines[0]
    assert "ZC_GATEWAY_TLS_CERT_FILE" in lines[0]
    assert "invalid setting ZC_GATEWAY_CREDENTIAL_PEPPER" in lines[0]
