"""Settings of the marketing service (``ZC_MARKETING_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import ServiceSettings


class MarketingSettings(ServiceSettings):
    """Topics, database and tuning of the marketing service; every name is a setting so tests
    run on topics and databases of their own."""

    model_config = SettingsConfigDict(env_prefix="ZC_MARKETING_", extra="ignore")

    service_name: str = "marketing"
    http_port: int = 8004
    mongodb_database: str = "zc_marketing"
    consumer_group: str = "marketing"
    topic: str = "marketing.events.v1"
    notifications_topic: str = "marketing.notifications.v1"
    identity_topic: str = "identity.events.v1"
    loan_topic: str = "loan.events.v1"
    payroll_topic: str = "payroll.events.v1"
    engagement_topic: str = "signals.engagement.v1"
    assistant_topic: str = "assistant.events.v1"
    # A complaint the party raised with the assistant pauses every offer to it until an
    # operator resolves it, and at most this long after it was raised.
    complaint_pause_s: float = Field(default=14 * 24 * 3600.0, gt=0)
    # Local time zone of quiet hours and cap days when a party has not chosen one.
    default_time_zone: str = "Asia/Shanghai"
    # Active campaigns and segments are cached this long (an approval in this process
    # refreshes at once).
    cache_seconds: float = Field(default=2.0, gt=0)
    # Loan reminders: how long after approval an unaccepted offer gets a reminder, and how
    # often the due reminders are looked for.
    loan_reminder_after_s: float = Field(default=3600.0, gt=0)
    reminder_poll_s: float = Field(default=5.0, gt=0)
    # The channel simulator (see docs/marketing.md): latency and failure rate per send.
    simulator_latency_ms: float = Field(default=15.0, ge=0)
    simulator_failure_rate: float = Field(default=0.0, ge=0, le=1)
    simulator_seed: int | None = None
    # The credential the bank's back office presents (X-Operator-Key) on every /v1 call;
    # no default: a deployment without it does not start.
    operator_key: SecretStr = Field(min_length=32)
    # How often approved campaigns whose start_at has come are looked for (and run).
    schedule_poll_s: float = Field(default=5.0, gt=0)
    # An Idempotency-Key whose first request has been in flight this long without an answer
    # (its process died) may be taken over by a retry.
    idempotency_lease_s: float = Field(default=60.0, gt=0)
    # Insert the demo catalog and segment when absent (zerocontact.marketing.demo); on for the
    # local suite (deploy/local/services.toml), off by default.
    demo_catalog: bool = False
