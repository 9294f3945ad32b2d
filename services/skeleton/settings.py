"""Settings of the walking skeleton's two apps."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import ServiceSettings

TOPIC = "skeleton.events.v1"


class AccountsSettings(ServiceSettings):
    """The writer app: accounts and deposits (``ZC_SKELETON_*``)."""

    model_config = SettingsConfigDict(env_prefix="ZC_SKELETON_", extra="ignore")

    service_name: str = "skeleton-accounts"
    http_port: int = 8010
    mongodb_database: str = "zc_skeleton"
    topic: str = TOPIC
    # 32-byte keys, base64url; no default: a deployment without its keys must not start.
    pii_key: SecretStr = Field(min_length=43)
    pii_index_key: SecretStr = Field(min_length=43)


class ProjectionSettings(ServiceSettings):
    """The consumer app: balances projected from the events (``ZC_SKELETON_PROJECTION_*``)."""

    model_config = SettingsConfigDict(env_prefix="ZC_SKELETON_PROJECTION_", extra="ignore")

    service_name: str = "skeleton-projection"
    http_port: int = 8011
    mongodb_database: str = "zc_skeleton_projection"
    topic: str = TOPIC
    consumer_group: str = "skeleton-projection"
