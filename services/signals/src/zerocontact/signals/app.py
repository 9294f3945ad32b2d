"""The signals worker: one Faust app turning identity and loan events into risk signals.

Run it with ``python -m zerocontact.signals worker -l info`` (or
``python -m faust -A zerocontact.signals.app worker``). The pipeline of a loan application
(two internal Kafka hops; each stage adds the features it keeps to the record's headers):

1. ``party-events`` — one stream over ``loan.events.v1`` and ``identity.events.v1`` (both
   keyed by party, co-partitioned with the party tables): keeps repayments, overdue notices,
   merchant revenue and failed authentications (with the failed-login-burst alert); for an
   application it marks a duplicate ``ce_id``, counts the party's applications, reads every
   party feature and forwards the application keyed by device;
2. ``applications-by-device`` — counts the device's applications and parties, raises the
   device-shared alert, forwards keyed by source address;
3. ``applications-by-source-address`` — drops an application already assessed (its ``ce_id``
   kept in the address's activity buckets), counts the address's applications, scores every
   feature and publishes the RiskAssessment to ``signals.risk.v1`` keyed by party.

Each stage writes its key's activity bucket once per application (count, members and the
application id in one value; ``tables.py``). Outputs are at least once, idempotent by id: an
assessment's id derives from the application's ``ce_id``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import faust
from faust.sensors import Monitor

from zerocontact.signals import records
from zerocontact.signals.features import (
    APPLICATIONS,
    FAILED_AUTHENTICATIONS,
    FEATURES,
    FeatureKey,
    feature,
)
from zerocontact.signals.scorecard import RULES, score
from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.tables import FeatureTables
from zerocontact.signals.v1 import risk_pb2
from zerocontact.signals.web import install_pages

__all__ = ["app", "build_app", "settings"]

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
_RULES = {rule.name: rule for rule in RULES}
_DEVICE_SHARED = _RULES["device_shared_by_many_parties"]
_LOGIN_BURST = _RULES["failed_login_burst"]
DUPLICATE_HEADER = "zc-duplicate"
FAILED_LOGINS = feature("failed_authentications_1h")
_DEVICE_FEATURES = tuple(
    d.name for d in FEATURES if d.key is FeatureKey.DEVICE and d.bucket is not None
)
_ADDRESS_FEATURES = tuple(
    d.name for d in FEATURES if d.key is FeatureKey.SOURCE_ADDRESS and d.bucket is not None
)


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


def _faust_app(settings: SignalsSettings) -> faust.App:
    return faust.App(
        settings.app_id,
        monitor=QuietMonitor(),
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap_servers.split(",")],
        store=settings.store,
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
    )


def _application(value: bytes | None) -> Any:
    """The LoanApplicationSubmitted in a record already known to carry one."""
    return records.decode_loan(value).loan_application_submitted


def build_app(settings: SignalsSettings) -> faust.App:
    """The Faust app with its topics, tables, agents and web pages (nothing connects yet)."""
    app = _faust_app(settings)
    tables = FeatureTables(app, settings.topic_partitions)
    partitions = settings.topic_partitions

    # One stream over both inputs (both keyed by party, co-partitioned with every party
    # table): each input record passes Faust's per-event machinery once, not once per agent.
    party_events = app.topic(settings.loan_topic, settings.identity_topic, **RAW)
    risk_topic = app.topic(settings.risk_topic, **RAW)
    loan_dlq = app.topic(f"{settings.loan_topic}.dlq", **RAW)
    identity_dlq = app.topic(f"{settings.identity_topic}.dlq", **RAW)
    by_device = app.topic(
        f"{settings.app_id}-applications-by-device", partitions=partitions, internal=True, **RAW
    )
    by_address = app.topic(
        f"{settings.app_id}-applications-by-source-address",
        partitions=partitions,
        internal=True,
        **RAW,
    )

    async def dead_letter(event: Any, topic: Any, source: str, exc: Exception) -> None:
        """Send an unreadable record to its topic's dead-letter twin; the stream goes on."""
        message = event.message
        log.warning(
            "unreadable record sent to the dead-letter topic",
            extra={"topic": source, "partition": message.partition, "offset": message.offset},
        )
        headers = [
            *_header_pairs(message.headers),
            ("dlq_error", str(exc).encode()),
            ("dlq_error_type", type(exc).__name__.encode()),
            ("dlq_original_topic", source.encode()),
            ("dlq_original_partition", str(message.partition).encode()),
            ("dlq_original_offset", str(message.offset).encode()),
            ("dlq_consumer_group", settings.app_id.encode()),
        ]
        await topic.send(key=message.key, value=message.value, headers=headers)

    @app.agent(party_events, name="party-events")
    async def on_party_event(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            if message.topic == settings.identity_topic:
                await _on_identity_event(event)
                continue
            try:
                envelope = records.envelope(message.headers)
                loan_event = records.decode_loan(message.value)
            except records.MalformedEvent as exc:
                await dead_letter(event, loan_dlq, settings.loan_topic, exc)
                continue
            if loan_event.WhichOneof("event") != "loan_application_submitted":
                _apply_party_loan_event(tables, loan_event, envelope)
                continue
            application = loan_event.loan_application_submitted
            if envelope.type != records.APPLICATION_TYPE or not application.application_id:
                continue
            at = message.timestamp
            party = application.party_id
            # A duplicate (outbox republishing, redelivery) still flows on, marked: the last
            # stage decides whether it was assessed already; no stage counts it twice.
            # One write: the count and the id that guards it go to the party's bucket.
            fresh = not tables.seen(FeatureKey.PARTY, party, envelope.id, at)
            if fresh:
                tables.record(FeatureKey.PARTY, party, at, count=APPLICATIONS, event_id=envelope.id)
            headers = [
                *_header_pairs(message.headers),
                records.features_header("party", tables.party_features(party, at).values),
            ]
            if not fresh:
                headers.append((DUPLICATE_HEADER, b"1"))
            await event.forward(
                by_device,
                # Without a device the application still flows on; keyed by party it spreads.
                key=application.device_id or f"no-device:{party}",
                headers=headers,
                timestamp=at,
            )

    async def _on_identity_event(event: Any) -> None:
        message = event.message
        try:
            envelope = records.envelope(message.headers)
            if envelope.type != records.AUTH_FAILED_TYPE:
                return
            failed = records.decode_identity(message.value).authentication_failed
        except records.MalformedEvent as exc:
            await dead_letter(event, identity_dlq, settings.identity_topic, exc)
            return
        party = failed.customer_id or _text(message.key)
        at = message.timestamp
        tables.record(FeatureKey.PARTY, party, at, count=FAILED_AUTHENTICATIONS)
        observed = Decimal(tables.windowed_value(FAILED_LOGINS, party, at))
        await _maybe_alert_login(app, tables, risk_topic, party, observed, at)

    @app.agent(by_device, name="applications-by-device")
    async def applications_by_device(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = _header_pairs(message.headers)
            application = _application(message.value)
            device = application.device_id
            at = message.timestamp
            if device and not _has(headers, DUPLICATE_HEADER):
                tables.record(
                    FeatureKey.DEVICE, device, at, count=APPLICATIONS, member=application.party_id
                )
            if device:
                values = tables.keyed_values(FeatureKey.DEVICE, device, at)
                await _maybe_alert_device(app, tables, risk_topic, application, values, at)
            else:
                values = dict.fromkeys(_DEVICE_FEATURES, 0)
            await event.forward(
                by_address,
                key=application.source_address or f"no-address:{application.party_id}",
                headers=[*headers, records.features_header("device", values)],
                timestamp=at,
            )

    @app.agent(by_address, name="applications-by-source-address")
    async def applications_by_address(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = _header_pairs(message.headers)
            envelope = records.envelope(headers)
            at = message.timestamp
            application = _application(message.value)
            address = application.source_address
            # The record's key: the address, or a per-party stand-in (the guard needs a key).
            guard_key = address or f"no-address:{application.party_id}"
            # Checked first: an internal redelivery of this stage's input (a crash between
            # the previous stage's send and its commit) is dropped before it counts again.
            if tables.seen(FeatureKey.SOURCE_ADDRESS, guard_key, envelope.id, at):
                log.info("duplicate application ignored", extra={"ce_id": envelope.id})
                continue
            # One write: the count (unless a marked duplicate or no address) and the id.
            counted = bool(address) and not _has(headers, DUPLICATE_HEADER)
            tables.record(
                FeatureKey.SOURCE_ADDRESS,
                guard_key,
                at,
                count=APPLICATIONS if counted else None,
                event_id=envelope.id,
            )
            values = records.read_features_header(headers)
            if address:
                counts = tables.keyed_values(FeatureKey.SOURCE_ADDRESS, address, at)
                values.update((name, Decimal(v)) for name, v in counts.items())
            else:
                values.update((name, Decimal(0)) for name in _ADDRESS_FEATURES)
            scored = score(values)
            value, out_headers, _ = records.assessment_record(
                application=application,
                application_event_id=envelope.id,
                features=_listed(values),
                scored=scored,
                assessed_at=datetime.now(UTC),
            )
            await risk_topic.send(key=application.party_id, value=value, headers=out_headers)

    @app.task  # type: ignore[untyped-decorator]
    async def restore_log_level() -> None:
        """Undo the DEBUG level Faust's terminal spinner puts on the root logger.

        The spinner wants every record; with it, every ``log.debug`` in Faust's and aiokafka's
        per-message paths builds a LogRecord: 10 % of the worker's CPU when profiled.
        """
        root = logging.getLogger()
        spinner = [h for h in root.handlers if type(h).__name__ == "SpinnerHandler"]
        for handler in spinner:
            root.removeHandler(handler)
        levels = [h.level for h in root.handlers if h.level]
        root.setLevel(min(levels) if levels else logging.INFO)

    # The agents' read cache is only valid for the partitions this worker holds (tables.py).
    app.on_partitions_revoked.connect(tables.forget)
    app.on_partitions_assigned.connect(tables.forget)

    @app.timer(interval=settings.read_cache_seconds)  # type: ignore[untyped-decorator]
    async def expire_read_cache() -> None:
        """Bound the read cache to the keys of the last ``read_cache_seconds``."""
        tables.forget()

    install_pages(app, tables, settings)
    app.signals_tables = tables  # type: ignore[attr-defined]  # for the support page's tests and the unit tests
    return app


def _apply_party_loan_event(tables: FeatureTables, loan_event: Any, envelope: Any) -> None:
    """Update the party-keyed loan tables (repayments, overdue notices, revenue)."""
    from zerocontact.signals import features

    kind = loan_event.WhichOneof("event")
    if kind == "repayment_received":
        repayment = loan_event.repayment_received
        updated = features.record_repayment(
            tables.plain_value("repayment_history", repayment.party_id),
            repayment_id=repayment.repayment_id or envelope.id,
            days_late=repayment.days_late,
        )
        if updated is not None:
            tables.set_plain("repayment_history", repayment.party_id, updated)
    elif kind == "loan_overdue":
        overdue = loan_event.loan_overdue
        updated = features.record_overdue(
            tables.plain_value("repayment_history", overdue.party_id),
            days_past_due=overdue.days_past_due,
        )
        if updated is not None:
            tables.set_plain("repayment_history", overdue.party_id, updated)
    elif kind == "merchant_revenue_reported":
        report = loan_event.merchant_revenue_reported
        kept = features.record_revenue(
            tables.plain_value("merchant_revenue_trend", report.party_id),
            report_id=report.report_id or envelope.id,
            period_start=report.period_start.seconds,
            currency=report.revenue.currency_code,
            minor_units=report.revenue.minor_units,
        )
        if kept is not None:
            tables.set_plain("merchant_revenue_trend", report.party_id, kept)


async def _maybe_alert_device(
    app: Any,
    tables: FeatureTables,
    risk_topic: Any,
    application: Any,
    values: dict[str, int],
    at: float,
) -> None:
    observed = {"parties_per_device_24h": Decimal(values["parties_per_device_24h"])}
    scored = score(observed, (_DEVICE_SHARED,))
    if not scored.triggered:
        return
    first, window_start = tables.raise_once(tables.device_alerts, application.device_id, at)
    if not first:
        return
    value, headers, _ = records.alert_record(
        kind=risk_pb2.RISK_ALERT_KIND_DEVICE_SHARED,
        party_id=application.party_id,
        window_key=f"{application.device_id}:{window_start:.0f}",
        reasons=scored.triggered,
        device_id=application.device_id,
    )
    await risk_topic.send(key=application.party_id, value=value, headers=headers)


async def _maybe_alert_login(
    app: Any, tables: FeatureTables, risk_topic: Any, party: str, observed: Decimal, at: float
) -> None:
    scored = score({"failed_authentications_1h": observed}, (_LOGIN_BURST,))
    if not scored.triggered:
        return
    first, window_start = tables.raise_once(tables.login_alerts, party, at)
    if not first:
        return
    value, headers, _ = records.alert_record(
        kind=risk_pb2.RISK_ALERT_KIND_FAILED_LOGIN_BURST,
        party_id=party,
        window_key=f"{party}:{window_start:.0f}",
        reasons=scored.triggered,
    )
    await risk_topic.send(key=party, value=value, headers=headers)


def _listed(values: dict[str, Decimal]) -> list[tuple[str, Decimal, str]]:
    from zerocontact.signals.tables import window_of

    return [(name, value, window_of(name)) for name, value in sorted(values.items())]


def _header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), bytes(v)) for k, v in items]


def _has(headers: list[tuple[str, bytes]], name: str) -> bool:
    return any(k == name for k, _ in headers)


def _text(key: bytes | str | None) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return key or ""


settings = SignalsSettings()
app = build_app(settings)

# The engagement agents (marketing.events.v1 -> signals.engagement.v1) register on this app.
from zerocontact.signals import engagement as _engagement  # noqa: E402,F401
