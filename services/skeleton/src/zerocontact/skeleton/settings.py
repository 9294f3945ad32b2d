"""Settings of the walking skeleton's two apps."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import PersonalDataSettings, ServiceSettings

TOPIC = "skeleton.events.v1"


class AccountsSettings(ServiceSettings, PersonalDataSettings):
    """The writer app: accounts and deposits (``ZC_SKELETON_*``)."""

    model_config = SettingsConfigDict(env_prefix="ZC_SKELETON_", extra="ignore")

    service_name: str = "skeleton-accounts"
    http_port: int = 8010
    mongodb_database: str = "zc_skeleton"
    topic: str = TOPIC


class ProjectionSettings(ServiceSettings):
    """The consumer app: balances projected from the events (``ZC_SKELETON_PROJECTION_*``)."""

    model_config = SettingsConfigDict(env_prefix="ZC_SKELETON_PROJECTION_", extra="ignore")

    service_name: str = "skeleton-projection"
    http_port: int = 8011
    mongodb_database: str = "zc_skeleton_projection"
    topic: str = TOPIC
    consumer_group: str = "skeleton-projection"
