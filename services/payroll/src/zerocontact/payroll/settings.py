"""Settings of the payroll service (``ZC_PAYROLL_*``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import PersonalDataSettings, ServiceSettings

EVENTS_TOPIC = "payroll.events.v1"
IDENTITY_TOPIC = "identity.events.v1"


class PayrollSettings(ServiceSettings, PersonalDataSettings):
    """Payroll's settings; card-number keys (and their rotation) come from PersonalDataSettings.

    Keys have no defaults: a deployment without its secrets must not start.
    """

    model_config = SettingsConfigDict(env_prefix="ZC_PAYROLL_", extra="ignore")

    service_name: str = "payroll"
    http_port: int = 8003
    mongodb_database: str = "zc_payroll"
    consumer_group: str = "payroll-directory"
    events_topic: str = EVENTS_TOPIC
    identity_topic: str = IDENTITY_TOPIC

    # Identity's access tokens.
    identity_jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    identity_issuer: str = "https://identity.zerocontact.internal"
    identity_audience: str = "zerocontact"
    step_up_max_age_s: float = Field(default=300.0, gt=0)

    # The payment rail: "simulator" is PaymentRailSimulator (its own database).
    rail: str = Field(default="simulator", pattern="^simulator$")
    rail_simulator_database: str = "zc_rail_simulator"
    rail_simulator_latency_s: float = Field(default=0.02, ge=0)

    # OnboardEmployer for an enterprise payroll has not heard of from identity (or not yet
    # VERIFIED) waits this long for identity's events, then answers 503 party_not_yet_known
    # (or 409 enterprise_not_verified); waiters on other replicas re-read every poll.
    party_wait_s: float = Field(default=2.0, ge=0, le=10)
    party_wait_poll_s: float = Field(default=0.25, gt=0, le=5)

    # Batch execution.
    chunk_size: int = Field(default=1000, ge=1, le=1000)  # items per rail request (Nium: 1,000)
    rail_concurrency: int = Field(default=4, ge=1, le=64)  # rail requests in flight per batch
    max_attempts: int = Field(default=4, ge=1)
    retry_initial_s: float = Field(default=0.05, ge=0)
    retry_max_s: float = Field(default=2.0, ge=0)
    max_item_amount: Decimal = Field(default=Decimal("500000.00"), gt=0)
    scheduler_interval_s: float = Field(default=5.0, gt=0)
    # A crashed process's batch is resumed by another once this lapses (renewed while running).
    batch_lease_s: float = Field(default=15.0, ge=1)
    recovery_min_age_s: float = Field(default=0.0, ge=0)

    # Sweep into the money-market product.
    mmf_annual_rate: Decimal = Field(default=Decimal("0.0180"), ge=0, lt=1)
    redeem_lead_time_s: float = Field(default=86_400.0, ge=0)
