"""The signals worker's Faust app logs in with the shared Kafka security settings."""

from __future__ import annotations

import ssl

import faust
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from zerocontact.signals.app import _broker_credentials
from zerocontact.signals.settings import SignalsSettings


def test_plaintext_needs_no_credentials() -> None:
    assert _broker_credentials(SignalsSettings(kafka_bootstrap_servers="k:9092")) is None


def test_sasl_ssl_becomes_faust_scram_credentials_over_tls() -> None:
    settings = SignalsSettings(
        kafka_bootstrap_servers="k:9094",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="signals",
        kafka_sasl_password="s3cret",
    )
    credentials = _broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert isinstance(auth.pop("ssl_context"), ssl.SSLContext)
    assert auth == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "signals",
        "sasl_plain_password": "s3cret",
    }
