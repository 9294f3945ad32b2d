"""Settings of the partner gateway (``ZC_GATEWAY_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import PersonalDataSettings, ServiceSettings


class GatewaySettings(ServiceSettings, PersonalDataSettings):
    """Where the gateway listens, what it trusts, which services and topics it fronts.

    ``credential_pepper`` keys the HMAC under which partners' API credentials are stored: a
    stolen ``partners`` collection alone does not let anyone test guesses offline.
    ``pii_key`` (PersonalDataSettings) encrypts stored idempotent responses.
    """

    model_config = SettingsConfigDict(env_prefix="ZC_GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Operational HTTP (/healthz, /readyz, /metrics) like every service, for probes and
    # Prometheus (kubelet probes cannot present a client certificate); 0 disables it.
    http_port: int = Field(default=8051, ge=0, le=65535)
    mongodb_database: str = "zc_gateway"

    # mTLS: the gateway's own certificate and key, and the CA that signs partners' certificates.
    tls_cert_file: str
    tls_key_file: str
    client_ca_file: str
    credential_pepper: SecretStr = Field(min_length=32)

    identity_url: str = "http://127.0.0.1:8001"
    loan_url: str = "http://127.0.0.1:8002"
    payroll_url: str = "http://127.0.0.1:8003"
    assistant_url: str = "http://127.0.0.1:8005"

    # The read model (readmodel.py): how long a view read from a service may be served again
    # while no event or mutation of the partner says it changed (0: every read goes to the
    # service), and how long the product catalogue is (0: not kept).
    read_model_max_age_s: float = Field(default=2.0, ge=0, le=60)
    products_cache_s: float = Field(default=30.0, ge=0, le=3600)
    # Identity's key set, to verify a party's token before serving it a view from the read
    # model (empty: <identity_url>/.well-known/jwks.json); issuer and audience as the services.
    jwks_url: str = ""
    jwt_issuer: str = "https://identity.zerocontact.internal"
    jwt_audience: str = "zerocontact"

    loan_topic: str = "loan.events.v1"
    payroll_topic: str = "payroll.events.v1"
    risk_topic: str = "signals.risk.v1"
    audit_topic: str = "gateway.audit.v1"
    # The watch streams read those topics with no consumer group; what they cannot read goes to
    # <topic>.dlq under this name (dlq_consumer_group), one dead letter per replica.
    watch_reader: str = "zerocontact-gateway-watch"

    # Unrestricted resource consumption (OWASP API4): size, time and rate bounds.
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    default_deadline_s: float = Field(default=10.0, gt=0)
    max_deadline_s: float = Field(default=30.0, gt=0)
    max_watch_s: float = Field(default=3600.0, gt=0)
    max_watchers_per_partner: int = Field(default=100, ge=1)
    # Default per-partner rate (a partner's registration may set its own).
    default_rate_per_s: float = Field(default=200.0, gt=0)
    # "shared": one count per partner across every instance (windows in MongoDB,
    # guard/ratelimit.py); "local": each instance its own (effective rate x replicas).
    rate_limit: Literal["shared", "local"] = "shared"
    # The shared limiter's window, and how long it waits for MongoDB before this call falls
    # back to the instance's own limiter.
    rate_limit_window_s: float = Field(default=1.0, gt=0, le=60)
    rate_limit_timeout_s: float = Field(default=0.5, gt=0, le=5)
    # Slots one write may claim ahead for a partner of >= 100 calls per window (1: every
    # admitted call is a write).
    rate_limit_max_chunk: int = Field(default=20, ge=1, le=1000)

    # Idempotency records are kept at least this long, then purged by a periodic sweep.
    idempotency_ttl_s: float = Field(default=24 * 3600.0, ge=24 * 3600.0)
    idempotency_purge_interval_s: float = Field(default=600.0, gt=0)
    # A record still in flight after this long is considered abandoned (crashed instance).
    idempotency_in_flight_timeout_s: float = Field(default=60.0, gt=0)

    # Webhooks (docs/gateway.md "Webhooks"): one consumer group per gateway deployment feeds
    # the delivery log; a periodic sender claims due deliveries (one indexed query per tick).
    webhooks_enabled: bool = True
    webhook_consumer_group: str = "zerocontact-gateway-webhooks"
    webhook_tick_s: float = Field(default=1.0, gt=0)
    # With nothing due the sender's tick stretches to this (new deliveries wake it at once):
    # how late a retry that falls due while the sender rests may start.
    webhook_idle_tick_s: float = Field(default=5.0, gt=0)
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    webhook_max_age_s: float = Field(default=3 * 24 * 3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # A claimed delivery whose instance died is taken over after this long (> the timeout).
    webhook_lease_s: float = Field(default=60.0, gt=0)
    webhook_claims_per_tick: int = Field(default=100, ge=1)
    webhook_concurrency: int = Field(default=16, ge=1)
    # How long an event waits for its resource's ownership record (written by the gateway
    # right after the service answered, which may be after the service's event is read).
    webhook_owner_grace_s: float = Field(default=10.0, ge=0)
    webhook_endpoint_cache_s: float = Field(default=5.0, gt=0)
    webhook_max_endpoints_per_partner: int = Field(default=16, ge=1)
    # http:// endpoints (development and tests only; partners' endpoints are https).
    webhook_allow_http: bool = False
