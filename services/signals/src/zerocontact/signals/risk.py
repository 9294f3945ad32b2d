"""The risk pipeline on the signals app: identity and loan events in, risk signals out.

The pipeline of a loan application (two internal Kafka hops; each stage adds the features it
keeps, and when it forwarded the record, to the record's headers):

1. ``party-events`` — one stream over ``loan.events.v1`` and ``identity.events.v1`` (both
   keyed by party, co-partitioned with the party tables): keeps repayments, overdue notices,
   merchant revenue and failed authentications (with the failed-login-burst alert); for an
   application it marks a duplicate ``ce_id``, counts the party's applications, reads every
   party feature and forwards the application keyed by device;
2. ``applications-by-device`` — counts the device's applications and parties (once per
   ``ce_id``: the id rides in the device's bucket), raises the device-shared alert, forwards
   keyed by source address;
3. ``applications-by-source-address`` — drops an application already assessed (its ``ce_id``
   kept in the address's activity buckets), counts the address's applications, scores every
   feature and publishes the RiskAssessment to ``signals.risk.v1`` keyed by party.

Each stage writes its key's activity bucket once per application (count, members and the
application id in one value; ``tables.py``). Outputs are at least once, idempotent by id: an
assessment's id derives from the application's ``ce_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import faust

from zerocontact.signals import features, metrics, records
from zerocontact.signals.dead_letters import dead_letter, header_pairs
from zerocontact.signals.features import (
    APPLICATIONS,
    FAILED_AUTHENTICATIONS,
    FEATURES,
    FeatureKey,
    feature,
)
from zerocontact.signals.scorecard import RULES, score
from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.tables import FeatureTables, window_of
from zerocontact.signals.tracing import continued, process_span, publish
from zerocontact.signals.v1 import risk_pb2

__all__ = ["DUPLICATE_HEADER", "RAW", "register"]

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
_RULES = {rule.name: rule for rule in RULES}
_DEVICE_SHARED = _RULES["device_shared_by_many_parties"]
_LOGIN_BURST = _RULES["failed_login_burst"]
DUPLICATE_HEADER = "zc-duplicate"
# The agents' names (also the ``agent`` label of the worker's metrics).
PARTY_AGENT = "party-events"
DEVICE_AGENT = "applications-by-device"
ADDRESS_AGENT = "applications-by-source-address"
FAILED_LOGINS = feature("failed_authentications_1h")
_DEVICE_FEATURES = tuple(
    d.name for d in FEATURES if d.key is FeatureKey.DEVICE and d.bucket is not None
)
_ADDRESS_FEATURES = tuple(
    d.name for d in FEATURES if d.key is FeatureKey.SOURCE_ADDRESS and d.bucket is not None
)


@dataclass(frozen=True)
class _Pipeline:
    """What the three stages share: settings, tables and topics."""

    settings: SignalsSettings
    tables: FeatureTables
    party_events: Any
    risk: Any
    loan_dlq: Any
    identity_dlq: Any
    by_device: Any
    by_address: Any

    async def dead_letter(self, event: Any, topic: Any, source: str, exc: Exception) -> None:
        """Send an unreadable record to its topic's dead-letter twin; the stream goes on."""
        await dead_letter(event, topic, source=source, group=self.settings.app_id, exc=exc)


def register(app: faust.App, settings: SignalsSettings) -> FeatureTables:
    """Add the risk pipeline's topics, tables and agents to ``app``; returns its tables."""
    tables = FeatureTables(app, settings.topic_partitions, settings.rocksdb_options())
    partitions = settings.topic_partitions
    pipeline = _Pipeline(
        settings=settings,
        tables=tables,
        # One stream over both inputs (both keyed by party, co-partitioned with every party
        # table): each input record passes Faust's per-event machinery once, not once per
        # agent.
        party_events=app.topic(settings.loan_topic, settings.identity_topic, **RAW),
        risk=app.topic(settings.risk_topic, **RAW),
        loan_dlq=app.topic(f"{settings.loan_topic}.dlq", **RAW),
        identity_dlq=app.topic(f"{settings.identity_topic}.dlq", **RAW),
        by_device=app.topic(
            f"{settings.app_id}-applications-by-device",
            partitions=partitions,
            internal=True,
            **RAW,
        ),
        by_address=app.topic(
            f"{settings.app_id}-applications-by-source-address",
            partitions=partitions,
            internal=True,
            **RAW,
        ),
    )
    _party_stage(app, pipeline)
    _device_stage(app, pipeline)
    _address_stage(app, pipeline)

    # The agents' read cache is only valid for the partitions this worker holds (tables.py).
    app.on_partitions_revoked.connect(tables.forget)
    app.on_partitions_assigned.connect(tables.forget)

    @app.timer(interval=settings.read_cache_seconds)  # type: ignore[untyped-decorator]
    async def expire_read_cache() -> None:
        """Bound the read cache to the keys of the last ``read_cache_seconds``."""
        tables.forget()

    return tables


def _party_stage(app: faust.App, p: _Pipeline) -> None:
    """Stage 1: party features from loan and identity events; applications on by device."""
    settings, tables = p.settings, p.tables

    @app.agent(p.party_events, name=PARTY_AGENT)
    async def on_party_event(stream: Any) -> None:
        async for event in stream.events():
            with process_span(event, settings.app_id):
                metrics.count(PARTY_AGENT, await on_party_record(event))

    async def on_party_record(event: Any) -> str:
        message = event.message
        if message.topic == settings.identity_topic:
            return await on_identity_event(event)
        try:
            envelope = records.envelope(message.headers)
            loan_event = records.decode_loan(message.value)
        except records.MalformedEvent as exc:
            await p.dead_letter(event, p.loan_dlq, settings.loan_topic, exc)
            return "dead_lettered"
        if loan_event.WhichOneof("event") != "loan_application_submitted":
            _apply_party_loan_event(tables, loan_event, envelope)
            return "applied"
        application = loan_event.loan_application_submitted
        if envelope.type != records.APPLICATION_TYPE or not application.application_id:
            return "ignored"
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
            records.sent_header("party"),
        ]
        if not fresh:
            headers.append((DUPLICATE_HEADER, b"1"))
        await event.forward(
            p.by_device,
            # Without a device the application still flows on; keyed by party it spreads.
            key=application.device_id or f"no-device:{party}",
            headers=continued(headers),  # the next stage continues this stage's span
            timestamp=at,
        )
        return "forwarded" if fresh else "duplicate"

    async def on_identity_event(event: Any) -> str:
        """Count a failed authentication (alert on too many); returns the outcome."""
        message = event.message
        try:
            envelope = records.envelope(message.headers)
            if envelope.type != records.AUTH_FAILED_TYPE:
                return "ignored"
            failed = records.decode_identity(message.value).authentication_failed
        except records.MalformedEvent as exc:
            await p.dead_letter(event, p.identity_dlq, settings.identity_topic, exc)
            return "dead_lettered"
        party = failed.customer_id or _text(message.key)
        at = message.timestamp
        # A redelivery (a rebalance or a crash before the commit, a DLQ replay) counts once:
        # the count and the id that guards it go to the party's bucket in one write.
        if tables.seen(FeatureKey.PARTY, party, envelope.id, at):
            return "duplicate"
        tables.record(
            FeatureKey.PARTY, party, at, count=FAILED_AUTHENTICATIONS, event_id=envelope.id
        )
        observed = Decimal(tables.windowed_value(FAILED_LOGINS, party, at))
        await _maybe_alert_login(tables, p.risk, party, observed, at)
        return "applied"


def _device_stage(app: faust.App, p: _Pipeline) -> None:
    """Stage 2: the device's applications and parties (device-shared alert); on by address."""
    tables = p.tables

    @app.agent(p.by_device, name=DEVICE_AGENT)
    async def applications_by_device(stream: Any) -> None:
        async for event in stream.events():
            with process_span(event, p.settings.app_id):
                await on_device_record(event)

    async def on_device_record(event: Any) -> None:
        message = event.message
        headers = _header_pairs(message.headers)
        application = _application(message.value)
        device = application.device_id
        at = message.timestamp
        outcome = "forwarded"
        # Counted once by this stage's own guard: the id kept in the device's buckets of the
        # last 24 h, whatever the record's timestamp (an outbox duplicate carries a later one)
        # and whatever the party stage marked. A copy marked duplicate upstream is counted here
        # when this stage never counted the application: a kill after the party stage's write
        # reached its changelog and before its forward reached the broker left the marked copy
        # the only one (tests/chaos/faust_state.py, decision 35).
        if device:
            event_id = records.envelope(headers).id
            fresh = not tables.seen(FeatureKey.DEVICE, device, event_id, at) and tables.record(
                FeatureKey.DEVICE,
                device,
                at,
                count=APPLICATIONS,
                member=application.party_id,
                event_id=event_id,
            )
            outcome = "forwarded" if fresh else "duplicate"
            values = tables.keyed_values(FeatureKey.DEVICE, device, at)
            await _maybe_alert_device(tables, p.risk, application, values, at)
        else:
            values = dict.fromkeys(_DEVICE_FEATURES, 0)
        await event.forward(
            p.by_address,
            key=application.source_address or f"no-address:{application.party_id}",
            headers=continued(
                [*headers, records.features_header("device", values), records.sent_header("device")]
            ),
            timestamp=at,
        )
        metrics.count(DEVICE_AGENT, outcome)


def _address_stage(app: faust.App, p: _Pipeline) -> None:
    """Stage 3: the address's applications, the score, the RiskAssessment (once per id)."""
    tables = p.tables

    @app.agent(p.by_address, name=ADDRESS_AGENT)
    async def applications_by_address(stream: Any) -> None:
        async for event in stream.events():
            with process_span(event, p.settings.app_id):
                await on_address_record(event)

    async def on_address_record(event: Any) -> None:
        message = event.message
        headers = _header_pairs(message.headers)
        envelope = records.envelope(headers)
        at = message.timestamp
        application = _application(message.value)
        address = application.source_address
        # The record's key: the address, or a per-party stand-in (the guard needs a key).
        guard_key = address or f"no-address:{application.party_id}"
        # Counted once by this stage's own guard (as the device stage): the count and the id
        # that guards it go to the address's bucket in one write.
        if tables.seen(FeatureKey.SOURCE_ADDRESS, guard_key, envelope.id, at):
            # Assessed already (a duplicate from the loan outbox, or this stage's input
            # delivered again after a kill or a rebalance): the kept record goes out again,
            # byte for byte. Dropping it instead lost the assessment whenever the kill fell
            # after the guard reached the changelog and before the record reached the broker
            # (tests/chaos/faust_state.py). Consumers drop the copy by its ce_id. An id counted
            # whose record was not kept (a kill between the two writes) is scored again.
            kept = tables.published(envelope.id, at)
            if kept is not None:
                await publish(p.risk, key=application.party_id, value=kept[0], headers=kept[1])
                metrics.count(ADDRESS_AGENT, "sent_again")
                return
        else:
            tables.record(
                FeatureKey.SOURCE_ADDRESS,
                guard_key,
                at,
                count=APPLICATIONS if address else None,
                event_id=envelope.id,
            )
        values = records.read_features_header(headers)
        if address:
            counts = tables.keyed_values(FeatureKey.SOURCE_ADDRESS, address, at)
            values.update((name, Decimal(v)) for name, v in counts.items())
        else:
            values.update((name, Decimal(0)) for name in _ADDRESS_FEATURES)
        scored = score(values)
        value, out_headers, assessment_id = records.assessment_record(
            application=application,
            application_event_id=envelope.id,
            features=_listed(values),
            scored=scored,
            assessed_at=datetime.now(UTC),
        )
        log.debug(
            "application assessed",
            extra={"assessment_id": assessment_id, "score": scored.score, "band": scored.band.name},
        )
        tables.keep_published(envelope.id, at, value, out_headers)
        await publish(p.risk, key=application.party_id, value=value, headers=out_headers)
        metrics.count(ADDRESS_AGENT, "assessed")
        metrics.produced(ADDRESS_AGENT, at)


def _application(value: bytes | None) -> Any:
    """The LoanApplicationSubmitted in a record already known to carry one."""
    return records.decode_loan(value).loan_application_submitted


def _apply_party_loan_event(tables: FeatureTables, loan_event: Any, envelope: Any) -> None:
    """Update the party-keyed loan tables (repayments, overdue notices, revenue)."""
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
    await publish(risk_topic, key=application.party_id, value=value, headers=headers)


async def _maybe_alert_login(
    tables: FeatureTables, risk_topic: Any, party: str, observed: Decimal, at: float
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
    await publish(risk_topic, key=party, value=value, headers=headers)


def _listed(values: dict[str, Decimal]) -> list[tuple[str, Decimal, str]]:
    return [(name, value, window_of(name)) for name, value in sorted(values.items())]


def _header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    return header_pairs(headers)


def _text(key: bytes | str | None) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return key or ""
