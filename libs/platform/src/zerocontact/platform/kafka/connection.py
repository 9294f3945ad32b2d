"""How clients reach Kafka: bootstrap servers plus, on a secured listener, TLS and SASL.

One place builds the keyword arguments every aiokafka client (producer, consumer, admin)
takes, so a service, a test and the CLI connect the same way. On the loopback dev listener
nothing but ``bootstrap_servers`` is set; on ``SASL_SSL`` the client authenticates with
SCRAM and verifies the broker's certificate against ``ssl_cafile`` (the system's trust store
when unset).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

__all__ = [
    "PROTOCOLS",
    "SASL_MECHANISMS",
    "KafkaConnection",
    "KafkaSettingsError",
    "as_connection",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaSettingsError(ValueError):
    """The Kafka connection settings contradict each other; the message is one line."""


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and the security of the listener they belong to."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None

    def __post_init__(self) -> None:
        protocol = self.security_protocol
        if protocol not in PROTOCOLS:
            raise KafkaSettingsError(
                f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        if not self.uses_sasl:
            return
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise KafkaSettingsError(
                f"KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} is not one of "
                f"{', '.join(SASL_MECHANISMS)}"
            )
        if not self.sasl_username:
            raise KafkaSettingsError(
                f"KAFKA_SASL_USERNAME is not set: KAFKA_SECURITY_PROTOCOL={protocol} "
                "needs the Kafka user to log in as"
            )
        if self.sasl_password is None or not self.sasl_password.get_secret_value():
            raise KafkaSettingsError(
                f"KAFKA_SASL_PASSWORD is not set: KAFKA_SECURITY_PROTOCOL={protocol} "
                f"needs the password of Kafka user {self.sasl_username!r}"
            )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context that trusts ``ssl_cafile`` (or the system's CAs); None without TLS.

        Built once per connection and shared by all its clients: the CA file is read (and the
        trust store loaded) once, not for every producer, consumer or admin client.
        """
        return self._ssl_context

    @cached_property
    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        context: ssl.SSLContext = create_ssl_context(cafile=self.ssl_cafile)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/the admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked in __post_init__
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs


def as_connection(target: str | KafkaConnection) -> KafkaConnection:
    """``target`` as a connection: a bare ``host:port[,...]`` string is the PLAINTEXT one."""
    return target if isinstance(target, KafkaConnection) else KafkaConnection(target)
