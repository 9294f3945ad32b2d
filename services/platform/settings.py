"""Settings every service shares; each service subclasses :class:`ServiceSettings`."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Engine addresses and runtime knobs read from the environment.

    ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` are shared by every service (and by the
    tests), so they are read without the service's prefix; everything else takes the
    service's own prefix (``ZC_<SERVICE>_``), set by the subclass.
    """

    model_config = SettingsConfigDict(env_prefix="ZC_", extra="ignore")

    service_name: str = "zerocontact"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
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
