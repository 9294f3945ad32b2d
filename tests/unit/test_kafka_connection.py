"""Kafka security settings: what a client is given, and the one line a gap produces."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from zerocontact.platform.kafka.connection import KafkaConnection, KafkaSettingsError
from zerocontact.platform.settings import ServiceSettings


def test_plaintext_clients_get_only_the_bootstrap_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    kwargs = ServiceSettings().kafka_connection().client_kwargs()
    assert kwargs == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_settings_come_from_the_shared_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9094")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "loan")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    settings = ServiceSettings()
    assert "s3cret" not in repr(settings)
    kwargs = settings.kafka_connection().client_kwargs()
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {
        "bootstrap_servers": "kafka:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "loan",
        "sasl_plain_password": "s3cret",
    }


def test_a_missing_password_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "loan")
    with pytest.raises(ValidationError) as caught:
        ServiceSettings()
    message = caught.value.errors()[0]["msg"]
    assert message == (
        "Value error, KAFKA_SASL_PASSWORD is not set: KAFKA_SECURITY_PROTOCOL=SASL_SSL "
        "needs the password of Kafka user 'loan'"
    )


@pytest.mark.parametrize(
    ("connection", "says"),
    [
        (lambda: KafkaConnection("k:1", security_protocol="TLS"), "KAFKA_SECURITY_PROTOCOL='TLS'"),
        (lambda: KafkaConnection("k:1", security_protocol="SASL_SSL"), "KAFKA_SASL_USERNAME"),
        (
            lambda: KafkaConnection(
                "k:1", security_protocol="SASL_SSL", sasl_mechanism="MD5", sasl_username="u"
            ),
            "KAFKA_SASL_MECHANISM='MD5'",
        ),
    ],
)
def test_contradicting_settings_name_the_variable(connection: object, says: str) -> None:
    with pytest.raises(KafkaSettingsError, match=says) as caught:
        connection()  # type: ignore[operator]
    assert "\n" not in str(caught.value)
