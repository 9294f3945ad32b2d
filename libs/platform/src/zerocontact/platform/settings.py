"""Settings every service shares; each service subclasses :class:`ServiceSettings`."""

from __future__ import annotations

from typing import Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zerocontact.platform.faults import crash_points
from zerocontact.platform.kafka.connection import KafkaConnection, KafkaSettingsError
from zerocontact.platform.pii import FieldCipher, decode_key
from zerocontact.platform.telemetry import configure_tracing


class ServiceSettings(BaseSettings):
    """Engine addresses and runtime knobs read from the environment.

    ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` are shared by every service (and by the
    tests), so they are read without the service's prefix, like the Kafka security settings
    (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_MECHANISM``, ``KAFKA_SASL_USERNAME``,
    ``KAFKA_SASL_PASSWORD``, ``KAFKA_SSL_CAFILE``); everything else takes the service's own
    prefix (``ZC_<SERVICE>_``), set by the subclass.
    """

    model_config = SettingsConfigDict(env_prefix="ZC_", extra="ignore")

    service_name: str = "zerocontact"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    kafka_security_protocol: str = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"),
    )
    kafka_sasl_mechanism: str = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"),
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username"),
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password"),
    )
    kafka_ssl_cafile: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"),
    )
    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27017/",
        validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"),
    )
    mongodb_database: str = "zerocontact"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    outbox_sweep_interval_s: float = Field(default=5.0, gt=0)
    consumer_group: str = "zerocontact"
    # How long a readiness probe waits for an engine before calling the service not ready.
    readiness_timeout_s: float = Field(default=2.0, gt=0)
    # Tracing: the OpenTelemetry SDK's own variables, read without the service's prefix so an
    # SRE sets them as for any workload; the sampling ratio of new traces is per service.
    otel_sdk_disabled: bool = Field(
        default=False, validation_alias=AliasChoices("OTEL_SDK_DISABLED", "otel_sdk_disabled")
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "otel_exporter_otlp_endpoint",
        ),
    )
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Self:
        self.kafka_connection()  # raises KafkaSettingsError (one line) when incomplete
        return self

    @model_validator(mode="after")
    def _crash_points_are_allowed(self) -> Self:
        crash_points()  # raises FaultInjectionRefused (one line) where they may not be armed
        return self

    def kafka_connection(self) -> KafkaConnection:
        """How this service's Kafka clients connect (TLS and SASL when configured)."""
        return KafkaConnection(
            bootstrap_servers=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
        )

    def configure_tracing(self) -> None:
        """Install this process's tracing from these settings (once per process)."""
        configure_tracing(
            self.service_name,
            enabled=not self.otel_sdk_disabled,
            sample_ratio=self.trace_sample_ratio,
            endpoint=self.otel_exporter_otlp_endpoint or None,
        )


class PersonalDataSettings(BaseSettings):
    """Keys of a service that stores personal data; mix into its settings class.

    Keys are 32 random bytes as base64url text, from the environment or a Secret, with no
    default: a service without its keys must not start. To rotate, move the current key under
    its id into ``pii_previous_keys`` (JSON, e.g. ``{"v1": "..."}``), set a new ``pii_key`` and
    ``pii_key_id``; old values still decrypt and new ones use the new key.
    """

    pii_key: SecretStr = Field(min_length=43)
    pii_index_key: SecretStr = Field(min_length=43)
    pii_key_id: str = Field(default="v1", pattern=r"^[A-Za-z0-9_-]{1,16}$")
    pii_previous_keys: dict[str, SecretStr] = Field(default_factory=dict)

    def field_cipher(self) -> FieldCipher:
        """The cipher for these keys."""
        return FieldCipher(
            decode_key(self.pii_key.get_secret_value()),
            index_key=decode_key(self.pii_index_key.get_secret_value()),
            key_id=self.pii_key_id,
            previous_keys={
                kid: decode_key(key.get_secret_value())
                for kid, key in self.pii_previous_keys.items()
            },
        )


def kafka_connection_for(bootstrap: str) -> KafkaConnection:
    """The connection to ``bootstrap`` with the security settings of the environment
    (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_CAFILE``), for the operator
    commands; raises :class:`KafkaSettingsError` with one line when they are incomplete."""
    try:
        return ServiceSettings(kafka_bootstrap_servers=bootstrap).kafka_connection()
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise KafkaSettingsError(message) from None
