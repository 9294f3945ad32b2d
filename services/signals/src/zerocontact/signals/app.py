"""The signals worker: one Faust app with two parts, built here.

Run it with ``python -m zerocontact.signals worker -l info`` (or
``python -m faust -A zerocontact.signals.app worker``). The parts register themselves on the
app :func:`build_app` makes, and neither imports this module:

- :mod:`zerocontact.signals.risk` — identity and loan events in, risk assessments and alerts
  out on ``signals.risk.v1`` (the pipeline is described there);
- :mod:`zerocontact.signals.engagement` — marketing events in, engagement signals out on
  ``signals.engagement.v1``.

The worker's web pages (health, readiness, a party's features) are :mod:`.web`; its Faust
``Worker`` (JSON logs, tracing) is :mod:`.worker`, and how a record's trace runs through the
agents is :mod:`.tracing`.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors import Monitor

from zerocontact.signals import engagement, risk
from zerocontact.signals.engagement import EngagementSettings
from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.tables import WindowIndexTable
from zerocontact.signals.web import install_pages
from zerocontact.signals.worker import worker_class

__all__ = ["app", "build_app", "settings"]


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-event bookkeeping.

    The default Monitor keeps counters and latency deques for every message, stream event,
    table read/write and send (for a ``/stats`` page this app does not serve): several
    sensor calls per record on the hot path. Commit, rebalance and assignment sensors stay.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None


def _broker_credentials(settings: SignalsSettings) -> Any:
    """Faust's credentials for a secured listener (None on PLAINTEXT), from the shared settings."""
    connection = settings.kafka_connection()
    if connection.uses_sasl:
        assert connection.sasl_password is not None  # checked by the settings
        return faust.SASLCredentials(
            username=connection.sasl_username,
            password=connection.sasl_password.get_secret_value(),
            ssl_context=connection.ssl_context(),
            mechanism=connection.sasl_mechanism,
        )
    if connection.uses_tls:
        return faust.SSLCredentials(connection.ssl_context())
    return None


def _faust_app(settings: SignalsSettings) -> faust.App:
    return faust.App(
        settings.app_id,
        monitor=QuietMonitor(),
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=_broker_credentials(settings),
        store=settings.store,
        Table=WindowIndexTable,  # one expiry entry per window, not per write
        datadir=str(settings.data_dir / settings.app_id),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_acks=-1,
        broker_commit_interval=settings.commit_interval_s,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        table_cleanup_interval=settings.table_cleanup_interval_s,
        consumer_auto_offset_reset="earliest",
        # The repartition topics are declared at start-up; if the first assignment runs before
        # the broker shows them, Faust's assignor skips them ("Ignoring missing topic") and
        # nothing consumes them until the next metadata refresh (aiokafka default: 5 min).
        consumer_metadata_max_age_ms=10_000,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        web_enabled=True,
        web_port=settings.http_port,
        web_bind=settings.http_host,
        web_host=settings.http_host,
        Worker=worker_class(settings),
    )


def build_app(
    settings: SignalsSettings, engagement_settings: EngagementSettings | None = None
) -> faust.App:
    """The Faust app with both parts' topics, tables and agents, and the web pages (nothing
    connects yet). ``engagement_settings`` come from the environment unless given."""
    app = _faust_app(settings)
    tables = risk.register(app, settings)

    install_pages(app, tables, settings)
    app.signals_tables = tables  # type: ignore[attr-defined]  # for the support page's tests and the unit tests
    engagement.register(app, settings, engagement_settings)
    return app


settings = SignalsSettings()
app = build_app(settings)
