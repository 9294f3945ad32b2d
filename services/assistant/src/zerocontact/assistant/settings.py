"""Settings of the assistant service (``ZC_ASSISTANT_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import PersonalDataSettings, ServiceSettings

EVENTS_TOPIC = "assistant.events.v1"


class AssistantSettings(ServiceSettings, PersonalDataSettings):
    """Runtime knobs of the assistant; secrets have no default, so a missing one fails."""

    model_config = SettingsConfigDict(env_prefix="ZC_ASSISTANT_", extra="ignore")

    service_name: str = "assistant"
    http_port: int = 8005
    mongodb_database: str = "zc_assistant"
    consumer_group: str = "assistant"
    events_topic: str = EVENTS_TOPIC

    # Identity's access tokens: verified locally against its JSON Web Key Set, as loan does.
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "https://identity.zerocontact.internal"
    jwt_audience: str = "zerocontact"
    # A repayment needs AAL2 and an authentication at most this old (loan's own rule).
    step_up_max_age_s: int = Field(default=300, ge=10)
    # The credential the back office presents (X-Operator-Key) on /v1/handoffs.
    operator_key: SecretStr = Field(min_length=32)

    # The services the assistant acts in, with the customer's own token.
    identity_url: str = "http://127.0.0.1:8001"
    loan_url: str = "http://127.0.0.1:8002"
    payroll_url: str = "http://127.0.0.1:8003"
    # Each call to them: connect and whole-request limits; a slower answer is "try later".
    backend_connect_timeout_s: float = Field(default=1.0, gt=0, le=30)
    backend_timeout_s: float = Field(default=5.0, gt=0, le=60)

    # The dialogue: below handoff_confidence a message goes to a person at once; below
    # clarify_confidence (or not understood) it is a failed turn, and max_failed_turns of them
    # in a row go to a person; a missing slot is asked for at most max_slot_asks times.
    handoff_confidence: float = Field(default=0.2, ge=0, le=1)
    clarify_confidence: float = Field(default=0.45, ge=0, le=1)
    max_failed_turns: int = Field(default=2, ge=1, le=10)
    max_slot_asks: int = Field(default=2, ge=1, le=10)

    # The customer's stream: a long poll waits at most this long; an event stream (SSE) stays
    # open at most stream_max_s, with a keep-alive comment every stream_keepalive_s.
    max_wait_s: float = Field(default=25.0, gt=0, le=60)
    stream_max_s: float = Field(default=300.0, gt=0, le=3600)
    stream_keepalive_s: float = Field(default=15.0, gt=0, le=60)
    # Other replicas' writes (an operator's reply taken by another pod) are seen this often.
    stream_poll_s: float = Field(default=0.5, gt=0, le=5)
