"""The signals worker: one Faust app turning identity and loan events into risk signals.

Run it with ``python -m zerocontact.signals worker -l info`` (or
``python -m faust -A zerocontact.signals.app worker``). The pipeline of a loan application:

1. ``applications-by-device`` — ``loan.events.v1`` filtered to applications, re-keyed by
   device with ``group_by``: counts the device's applications and parties, raises the
   device-shared alert, and forwards the application keyed by source address with the device
   features in a header;
2. ``applications-by-source-address`` — counts the address's applications and forwards the
   application keyed by party again, with the address features added;
3. ``assess-applications`` — co-partitioned with the inputs, so the party's own tables are
   local: drops an application already assessed, counts it, reads the party features, scores
   them and publishes the RiskAssessment to ``signals.risk.v1``.

Beside it ``party-loan-features`` (repayments, overdue notices, merchant revenue) and
``identity-features`` (failed authentications, the failed-login-burst alert) keep the
party-keyed tables. Outputs are at least once, idempotent by id: an assessment's id derives
from the application's ``ce_id`` and the app keeps a table of assessed applications.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import faust

from zerocontact.signals import records
from zerocontact.signals.features import FeatureKey, feature
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


def _faust_app(settings: SignalsSettings) -> faust.App:
    return faust.App(
        settings.app_id,
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

    loan_topic = app.topic(settings.loan_topic, **RAW)
    identity_topic = app.topic(settings.identity_topic, **RAW)
    risk_topic = app.topic(settings.risk_topic, **RAW)
    loan_dlq = app.topic(f"{settings.loan_topic}.dlq", **RAW)
    identity_dlq = app.topic(f"{settings.identity_topic}.dlq", **RAW)
    by_address = app.topic(
        f"{settings.app_id}-applications-by-source-address",
        partitions=partitions,
        internal=True,
        **RAW,
    )
    to_assess = app.topic(
        f"{settings.app_id}-applications-to-assess", partitions=partitions, internal=True, **RAW
    )
    device_repartition = app.topic(
        f"{settings.app_id}-applications-by-device-repartition",
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

    def is_application(value: bytes) -> bool:
        event = faust.streams.current_event()
        if event is None:
            return False
        try:
            envelope = records.envelope(event.message.headers)
            return envelope.type == records.APPLICATION_TYPE and bool(
                _application(value).application_id
            )
        except records.MalformedEvent:
            return False  # party-loan-features sends it to the dead-letter topic

    def device_key(value: bytes) -> str:
        application = _application(value)
        # Without a device the application still flows on; keyed by party it spreads evenly.
        return application.device_id or f"no-device:{application.party_id}"

    @app.agent(loan_topic, name="applications-by-device")
    async def applications_by_device(stream: Any) -> None:
        grouped = stream.filter(is_application).group_by(
            device_key, name="applications-by-device", topic=device_repartition
        )
        async for event in grouped.events():
            message = event.message
            envelope = records.envelope(message.headers)
            application = _application(message.value)
            at = message.timestamp
            fresh = tables.first_time(tables.seen_at_device_stage, envelope.id, at)
            device = application.device_id
            if device and fresh:
                tables.increment("applications_per_device_1h", device)
                tables.increment("applications_per_device_24h", device)
                tables.add_member("parties_per_device_24h", device, application.party_id, at)
            values = (
                tables.keyed_values(FeatureKey.DEVICE, device, at)
                if device
                else dict.fromkeys(
                    (
                        "applications_per_device_1h",
                        "applications_per_device_24h",
                        "parties_per_device_24h",
                    ),
                    0,
                )
            )
            if device:
                await _maybe_alert_device(app, tables, risk_topic, application, values, at)
            headers = [*_header_pairs(message.headers), records.features_header("device", values)]
            if not fresh:
                headers.append((DUPLICATE_HEADER, b"1"))
            await event.forward(
                by_address,
                key=application.source_address or f"no-address:{application.party_id}",
                headers=headers,
                timestamp=at,
            )

    @app.agent(by_address, name="applications-by-source-address")
    async def applications_by_address(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = _header_pairs(message.headers)
            application = _application(message.value)
            address = application.source_address
            at = message.timestamp
            if address and not _has(headers, DUPLICATE_HEADER):
                tables.increment("applications_per_source_address_1h", address)
                tables.increment("applications_per_source_address_24h", address)
            values = (
                tables.keyed_values(FeatureKey.SOURCE_ADDRESS, address, at)
                if address
                else dict.fromkeys(
                    ("applications_per_source_address_1h", "applications_per_source_address_24h"), 0
                )
            )
            await event.forward(
                to_assess,
                key=application.party_id,
                headers=[*headers, records.features_header("source_address", values)],
                timestamp=at,
            )

    @app.agent(to_assess, name="assess-applications")
    async def assess_applications(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = _header_pairs(message.headers)
            envelope = records.envelope(headers)
            at = message.timestamp
            if not tables.first_time(tables.assessed, envelope.id, at):
                log.info("duplicate application ignored", extra={"ce_id": envelope.id})
                continue
            application = _application(message.value)
            party = application.party_id
            tables.increment("applications_per_party_1h", party)
            tables.increment("applications_per_party_24h", party)
            values = tables.party_features(party, at).values
            values.update(records.read_features_header(headers))
            scored = score(values)
            value, out_headers, _ = records.assessment_record(
                application=application,
                application_event_id=envelope.id,
                features=_listed(values),
                scored=scored,
                assessed_at=datetime.now(UTC),
            )
            await risk_topic.send(key=party, value=value, headers=out_headers)

    @app.agent(loan_topic, name="party-loan-features")
    async def party_loan_features(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                envelope = records.envelope(message.headers)
                loan_event = records.decode_loan(message.value)
            except records.MalformedEvent as exc:
                await dead_letter(event, loan_dlq, settings.loan_topic, exc)
                continue
            _apply_party_loan_event(tables, loan_event, envelope)

    @app.agent(identity_topic, name="identity-features")
    async def identity_features(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                envelope = records.envelope(message.headers)
                if envelope.type != records.AUTH_FAILED_TYPE:
                    continue
                failed = records.decode_identity(message.value).authentication_failed
            except records.MalformedEvent as exc:
                await dead_letter(event, identity_dlq, settings.identity_topic, exc)
                continue
            party = failed.customer_id or _text(message.key)
            tables.increment("failed_authentications_1h", party)
            at = message.timestamp
            observed = Decimal(tables.windowed_value(FAILED_LOGINS, party, at))
            await _maybe_alert_login(app, tables, risk_topic, party, observed, at)

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

    install_pages(app, tables, settings)
    app.signals_tables = tables  # type: ignore[attr-defined]  # for the support page's tests and the unit tests
    return app


def _apply_party_loan_event(tables: FeatureTables, loan_event: Any, envelope: Any) -> None:
    """Update the party-keyed loan tables (repayments, overdue notices, revenue)."""
    from zerocontact.signals import features

    kind = loan_event.WhichOneof("event")
    if kind == "repayment_received":
        repayment = loan_event.repayment_received
        table = tables.plain["repayment_history"]
        updated = features.record_repayment(
            table[repayment.party_id],
            repayment_id=repayment.repayment_id or envelope.id,
            days_late=repayment.days_late,
        )
        if updated is not None:
            table[repayment.party_id] = updated
    elif kind == "loan_overdue":
        overdue = loan_event.loan_overdue
        table = tables.plain["repayment_history"]
        updated = features.record_overdue(
            table[overdue.party_id], days_past_due=overdue.days_past_due
        )
        if updated is not None:
            table[overdue.party_id] = updated
    elif kind == "merchant_revenue_reported":
        report = loan_event.merchant_revenue_reported
        table = tables.plain["merchant_revenue_trend"]
        kept = features.record_revenue(
            table[report.party_id],
            report_id=report.report_id or envelope.id,
            period_start=report.period_start.seconds,
            currency=report.revenue.currency_code,
            minor_units=report.revenue.minor_units,
        )
        if kept is not None:
            table[report.party_id] = kept


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
