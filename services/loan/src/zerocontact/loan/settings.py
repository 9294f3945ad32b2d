"""Settings of the loan service (``ZC_LOAN_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import ServiceSettings

EVENTS_TOPIC = "loan.events.v1"
RISK_TOPIC = "signals.risk.v1"
IDENTITY_TOPIC = "identity.events.v1"


class LoanSettings(ServiceSettings):
    """Runtime knobs of the loan service; secrets have no default, so a missing one fails."""

    model_config = SettingsConfigDict(env_prefix="ZC_LOAN_", extra="ignore")

    service_name: str = "loan"
    http_port: int = 8002
    mongodb_database: str = "zc_loan"
    consumer_group: str = "loan"
    events_topic: str = EVENTS_TOPIC
    risk_topic: str = RISK_TOPIC
    identity_topic: str = IDENTITY_TOPIC

    # Identity's access tokens: verified locally against its JSON Web Key Set.
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "https://identity.zerocontact.internal"
    jwt_audience: str = "zerocontact"
    # Accepting an offer needs AAL2 and an authentication at most this old.
    step_up_max_age_s: int = Field(default=300, ge=10)
    # The credential operators' tools present on /v1/admin (X-Operator-Key).
    operator_key: SecretStr = Field(min_length=32)

    # PaymentRailSimulator: latency and failures of the simulated interbank rail.
    rail_latency_ms: float = Field(default=15.0, ge=0)
    rail_failure_rate: float = Field(default=0.0, ge=0, le=1)
    rail_closed_accounts: list[str] = Field(default_factory=list)
    rail_max_attempts: int = Field(default=3, ge=1)

    # A request naming a party loan has not heard of from identity (or not at the product's
    # KYC level) waits this long for identity's events, then answers 503 party_not_yet_known
    # (or 403 party_not_verified). The consumer wakes waiters at once; other replicas' waiters
    # re-read every party_wait_poll_s.
    party_wait_s: float = Field(default=2.0, ge=0, le=10)
    party_wait_poll_s: float = Field(default=0.25, gt=0, le=5)
    # A risk alert keeps blocking new loans for this long after it was raised.
    alert_window_days: int = Field(default=30, ge=1)
    # Recovery sweep: finish acceptances, disbursements and repayments a crash interrupted.
    recovery_interval_s: float = Field(default=10.0, gt=0)
    recovery_min_age_s: float = Field(default=5.0, ge=0)
    # Outbox relays side by side (zerocontact.loan.relays): one relay flushes ~80 aggregates/s.
    outbox_relays: int = Field(default=4, ge=1, le=64)
    # How long the producer holds a record for others to share its request (Kafka's linger.ms):
    # the 310 path waits for it three times (submitted, decided, disbursed), so 1 ms as on the
    # assistant's and marketing's latency paths (5 ms before; the platform's default).
    publish_linger_ms: int = Field(default=1, ge=0, le=100)
    # Overdue detection runs this often (as of today); the admin endpoint runs it on demand.
    overdue_scan_interval_s: float = Field(default=3600.0, gt=0)
