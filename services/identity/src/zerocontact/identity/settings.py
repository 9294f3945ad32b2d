"""Settings of the identity service (``ZC_IDENTITY_*``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import PersonalDataSettings, ServiceSettings

EVENTS_TOPIC = "identity.events.v1"
NOTIFICATIONS_TOPIC = "identity.notifications.v1"


class IdentitySettings(ServiceSettings, PersonalDataSettings):
    """Keys have no defaults: a deployment without its secrets must not start.

    Token signing: either ``jwt_signing_key`` (an Ed25519 private key in PEM) or
    ``jwt_signing_seed`` (32 random bytes, base64url, the Ed25519 private key itself as
    RFC 8032 defines it; what ``deploy/local`` generates). The key id (``kid``) is the key's
    RFC 7638 thumbprint, so it never needs configuring. ``jwt_previous_public_keys`` keeps
    retired keys' PEM public keys in the JWKS until the tokens they signed have expired.
    """

    model_config = SettingsConfigDict(env_prefix="ZC_IDENTITY_", extra="ignore")

    service_name: str = "identity"
    http_port: int = 8001
    mongodb_database: str = "zc_identity"
    consumer_group: str = "identity-kyb"
    events_topic: str = EVENTS_TOPIC
    notifications_topic: str = NOTIFICATIONS_TOPIC

    # Personal data keys (pii_key, pii_index_key, rotation) come from PersonalDataSettings.

    jwt_signing_key: SecretStr | None = None
    jwt_signing_seed: SecretStr | None = Field(default=None, min_length=43)
    jwt_previous_public_keys: list[str] = Field(default_factory=list)
    jwt_issuer: str = "https://identity.zerocontact.internal"
    jwt_audience: str = "zerocontact"
    access_token_ttl_s: int = Field(default=300, ge=30, le=3600)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=300)
    # How recent an authentication must be for a sensitive operation (step-up).
    step_up_max_age_s: int = Field(default=300, ge=10)

    # Argon2id cost (RFC 9106 second recommended option by default).
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65_536, ge=8)
    password_parallelism: int = Field(default=4, ge=1)

    # Brute-force protection: lock after N consecutive failures for base * 2^k seconds.
    party_failure_threshold: int = Field(default=5, ge=1)
    source_failure_threshold: int = Field(default=20, ge=1)
    lockout_base_s: float = Field(default=30.0, gt=0)
    lockout_max_s: float = Field(default=3600.0, gt=0)

    totp_issuer: str = "zerocontact"
    sms_code_ttl_s: int = Field(default=300, ge=30)
    sms_code_max_attempts: int = Field(default=5, ge=1)
    # The SMS gateway's X25519 public key (32 bytes base64url): SMS payloads are sealed to it.
    sms_gateway_public_key: SecretStr = Field(min_length=43)
    # The credential the SMS gateway presents to redeem deliveries (X-Gateway-Key).
    sms_gateway_key: SecretStr = Field(min_length=43)
    # The credential KYC reviewers' back office presents (X-Operator-Key).
    operator_key: SecretStr = Field(min_length=43)

    # Proxies whose X-Forwarded-For is trusted for the source address: addresses or networks
    # ("10.0.0.7", "10.42.0.0/16"), as the gateway's pods take addresses from a pod CIDR.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)

    # Trust services (docs/identity-trust.md). The trust log's Ed25519 key: 32 random bytes,
    # base64url (deploy/local generates it). Without it the trust routes are not mounted.
    trust_log_signing_seed: SecretStr | None = Field(default=None, min_length=43)
    # Signed tree heads are published at most this often when the log grew.
    trust_head_interval_s: float = Field(default=60.0, gt=0)
    # The log's sequencer (docs/identity-trust.md): the writer's lease lapses this long after
    # its holder stops renewing (renewed every third of it; a clean stop releases it).
    trust_log_lease_s: float = Field(default=5.0, ge=1.0, le=60.0)
    # How often the holder reads the queue for leaves queued by other replicas (a replica's
    # own leaves wake it at once), and how many leaves one batch integrates at most.
    trust_log_poll_s: float = Field(default=0.05, gt=0, le=5.0)
    # An empty queue stretches the holder's poll up to this (at most a fifth of the lease):
    # the longest a leaf queued by another replica waits while the log is idle.
    trust_log_idle_poll_s: float = Field(default=1.0, gt=0, le=12.0)
    trust_log_batch_max: int = Field(default=1_000, ge=1, le=10_000)
    # How long a signing request waits for its leaf before answering 202 (contract SIGNING).
    trust_sign_wait_s: float = Field(default=5.0, gt=0, le=30.0)
    # Integrated leaves whose request is gone are completed by the holder after this long.
    trust_sweep_after_s: float = Field(default=15.0, gt=0)
    # How often expired dual recordings are purged (their files deleted, the record kept).
    trust_recording_purge_interval_s: float = Field(default=3_600.0, gt=0)
    # How recent a live face verification must be to sign a contract.
    face_verification_max_age_s: int = Field(default=600, ge=30)
    # Blinks a liveness video must show.
    liveness_blinks: int = Field(default=2, ge=1, le=5)
    # Dual-recording retention per product code, in days ("default" for the others). To be
    # confirmed by compliance against the regulator's rule for each product line.
    dual_recording_retention_days: dict[str, int] = Field(
        default_factory=lambda: {"default": 5 * 366, "wealth": 20 * 366, "insurance": 10 * 366}
    )

    @model_validator(mode="after")
    def _one_signing_key(self) -> IdentitySettings:
        if (self.jwt_signing_key is None) == (self.jwt_signing_seed is None):
            raise ValueError("set exactly one of jwt_signing_key (PEM) or jwt_signing_seed")
        return self
