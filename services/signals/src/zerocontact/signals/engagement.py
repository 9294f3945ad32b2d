"""Engagement signals: agents on the signals Faust app, from ``marketing.events.v1`` and
``assistant.events.v1`` to ``signals.engagement.v1`` (``EngagementEvent``), consumed back by
marketing.

- ``engagement-by-party`` (input keyed by party): a per-party engagement score with
  exponential decay. Each interaction adds its weight (``WEIGHTS``, in points); the score at
  time t is ``sum(weight_i * 2 ** (-(t - t_i) / half_life))``, kept as (score, as_of) and
  decayed forward at each new event: ``score(t) = score(as_of) * 2 ** (-(t - as_of) /
  half_life) + weight``. The half-life is ``ZC_SIGNALS_ENGAGEMENT_HALF_LIFE_S`` (default 7
  days). Time is the event's ``ce_time``, not the worker's clock, so a replay gives the same
  scores. The party's value keeps its last 32 event ids: a redelivered event adds nothing
  (one table write per event, docs/signals.md). Published as ``score_milli`` (thousandths).
  Campaign and studio events are forwarded to two internal topics, re-keyed. The assistant's
  events (same key, same partitions) score too: an answered question and an action done for
  the customer are interactions with the bank (``assistant_*`` weights).
- ``engagement-by-campaign``: the real-time funnel (sent/delivered/opened/clicked/converted)
  per campaign. At least once: a redelivery inside a crash window may count twice; the
  service's evaluation (exact, from its own records) is the reference.
- ``engagement-by-session``: concurrent viewers per studio session (the set of parties
  present, from joined/left).

``zerocontact.signals.app`` builds the app and calls :func:`register`; the scoring rules
(``WEIGHTS``, :func:`add`, :func:`interaction`) are pure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import faust
from google.protobuf.message import DecodeError
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from zerocontact.assistant.v1 import events_pb2 as assistant_pb
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.platform.kafka.cloudevents import CloudEvent, MalformedEvent, dataschema_for
from zerocontact.platform.settings import ServiceSettings
from zerocontact.platform.telemetry import consume_span
from zerocontact.signals import metrics
from zerocontact.signals.dead_letters import dead_letter
from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.tracing import continued, publish
from zerocontact.signals.v1 import engagement_pb2

log = logging.getLogger(__name__)

# The agents' names (also the ``agent`` label of the worker's metrics).
PARTY_AGENT = "engagement-by-party"
CAMPAIGN_AGENT = "engagement-by-campaign"
SESSION_AGENT = "engagement-by-session"

RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
SOURCE: Final = "zerocontact.signals"
ASSISTANT_PACKAGE: Final = assistant_pb.DESCRIPTOR.package + "."
# Points per interaction (delivery alone shows no engagement).
WEIGHTS: Final[dict[str, float]] = {
    "opened": 1.0,
    "clicked": 3.0,
    "converted": 10.0,
    "studio_joined": 1.0,
    "studio_commented": 2.0,
    "studio_card_clicked": 3.0,
    "studio_converted": 10.0,
    "assistant_answered": 0.5,
    "assistant_action": 2.0,
}
KEEP_IDS: Final = 32
FUNNEL_STAGES: Final = ("sent", "delivered", "opened", "clicked", "converted")


class EngagementSettings(ServiceSettings):
    """Topics and the half-life (``ZC_SIGNALS_*``, beside the risk pipeline's settings)."""

    model_config = SettingsConfigDict(env_prefix="ZC_SIGNALS_", extra="ignore")

    marketing_topic: str = "marketing.events.v1"
    assistant_topic: str = "assistant.events.v1"
    engagement_topic: str = "signals.engagement.v1"
    engagement_half_life_s: float = Field(default=7 * 24 * 3600.0, gt=0)


@dataclass(frozen=True)
class Interaction:
    """What one marketing event means for the signals."""

    party_id: str
    weight_key: str | None  # a WEIGHTS key, or None when it adds no engagement
    campaign_id: str = ""
    funnel_stage: str = ""
    studio_id: str = ""
    session_id: str = ""
    studio_kind: str = ""


def decayed(score: float, as_of: float, at: float, half_life_s: float) -> float:
    """``score`` (valued at ``as_of``, seconds) decayed to ``at``; never grows backwards."""
    age = max(0.0, at - as_of)
    return float(score * 2.0 ** (-age / half_life_s))


def add(
    state: dict[str, Any] | None, event_id: str, weight: float, at: float, half_life_s: float
) -> tuple[dict[str, Any], bool]:
    """The party's state after one weighted event at ``at``; False when seen before."""
    state = dict(state or {"score": 0.0, "as_of": at, "ids": []})
    if event_id in state["ids"]:
        return state, False
    as_of = max(float(state["as_of"]), at)  # an older event decays from its own time
    score = decayed(float(state["score"]), float(state["as_of"]), as_of, half_life_s)
    score += weight * 2.0 ** (-(as_of - at) / half_life_s)
    state.update(score=score, as_of=as_of, ids=[*state["ids"], event_id][-KEEP_IDS:])
    return state, True


def interaction(event: marketing_pb.MarketingEvent) -> Interaction | None:
    """The engagement meaning of a marketing event (None: not an interaction)."""
    kind = event.WhichOneof("event")
    if kind == "offer_sent":
        e = event.offer_sent
        return Interaction(e.party_id, None, e.campaign_id, "sent")
    if kind == "offer_interaction":
        i = event.offer_interaction
        stage = i.stage if i.stage in FUNNEL_STAGES else ""
        return Interaction(
            i.party_id, i.stage if i.stage in WEIGHTS else None, i.campaign_id, stage
        )
    if kind == "offer_converted":
        c = event.offer_converted
        # A holdout conversion is engagement with the bank, not with the campaign's funnel.
        return Interaction(c.party_id, "converted", "" if c.holdout else c.campaign_id, "converted")
    if kind == "studio_activity":
        s = event.studio_activity
        key = f"studio_{s.kind}"
        return Interaction(
            s.party_id,
            key if key in WEIGHTS else None,
            studio_id=s.studio_id,
            session_id=s.session_id,
            studio_kind=s.kind,
        )
    return None


def assistant_interaction(event: assistant_pb.AssistantEvent) -> Interaction | None:
    """The engagement meaning of an assistant event (None: not an interaction)."""
    kind = event.WhichOneof("event")
    if kind == "question_answered":
        return Interaction(event.question_answered.party_id, "assistant_answered")
    if kind == "action_performed":
        a = event.action_performed
        done = a.outcome == assistant_pb.ACTION_OUTCOME_SUCCEEDED
        return Interaction(a.party_id, "assistant_action" if done else None)
    return None


def _ts(seconds: float) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(seconds, UTC))
    return stamp


def _record(
    wrapper: engagement_pb2.EngagementEvent, key: str, at: float, event_id: str
) -> tuple[bytes, list[tuple[str, bytes]]]:
    import uuid

    inner = getattr(wrapper, wrapper.WhichOneof("event") or "")
    cloud = CloudEvent(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"engagement:{event_id}:{inner.DESCRIPTOR.name}")),
        source=SOURCE,
        type=inner.DESCRIPTOR.full_name,
        subject=key,
        data=wrapper.SerializeToString(),
        time=datetime.fromtimestamp(at, UTC),
        dataschema=dataschema_for(wrapper.DESCRIPTOR.full_name),
    )
    return cloud.data, cloud.headers()


def _load(raw: bytes | None) -> dict[str, Any] | None:
    return json.loads(raw) if raw else None


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _read(message: Any) -> tuple[CloudEvent, Interaction | None]:
    """The record's CloudEvent and what it means (a marketing or an assistant event, by its
    ``ce_type``); raises :class:`MalformedEvent` or ``DecodeError`` when unreadable."""
    headers = (
        list(message.headers.items())
        if hasattr(message.headers, "items")
        else list(message.headers or [])
    )
    cloud = CloudEvent.from_record([(str(k), bytes(v)) for k, v in headers], message.value)
    if cloud.type.startswith(ASSISTANT_PACKAGE):
        found = assistant_interaction(assistant_pb.AssistantEvent.FromString(message.value))
    else:
        found = interaction(marketing_pb.MarketingEvent.FromString(message.value or b""))
    return cloud, found


async def _interactions(
    stream: Any, t: _Topology, agent: str
) -> AsyncIterator[tuple[Any, CloudEvent, Interaction]]:
    """The stream's events that read as an interaction; an unreadable input record goes to
    its topic's dead-letter twin (the stream goes on), others are skipped."""
    async for event in stream.events():
        try:
            cloud, found = _read(event.message)
        except (MalformedEvent, DecodeError) as exc:
            topic = event.message.topic
            dlq = t.dead_letters.get(topic)
            if dlq is None:  # a re-keyed internal record: its input was read once already
                log.warning("unreadable engagement record skipped", extra={"topic": topic})
            else:
                await dead_letter(event, dlq, source=topic, group=t.group, exc=exc)
            metrics.count(agent, "dead_lettered")
            continue
        if found is not None:
            yield event, cloud, found


def _span(event: Any, cloud: CloudEvent, group: str) -> Any:
    """The ``<topic> process`` span of one input record (docs/observability.md)."""
    message = event.message
    return consume_span(
        message.topic,
        group=group,
        partition=message.partition,
        offset=message.offset,
        event_id=cloud.id,
        event_type=cloud.type,
        traceparent=cloud.traceparent,
    )


@dataclass(frozen=True)
class _Topology:
    """The engagement topics and tables on the app, shared by its three agents."""

    group: str  # the Faust app id: the consumer group
    half_life_s: float
    inputs: Any  # marketing.events.v1 and assistant.events.v1, both keyed by party
    dead_letters: dict[str, Any]  # input topic -> its <topic>.dlq
    out: Any
    by_campaign: Any
    by_session: Any
    party_scores: Any
    campaign_funnels: Any
    session_viewers: Any


def register(
    app: faust.App, settings: SignalsSettings, engagement: EngagementSettings | None = None
) -> None:
    """Add the engagement topics, tables and agents to ``app`` (settings from the env unless
    given)."""
    engagement = engagement or EngagementSettings()
    partitions = settings.topic_partitions

    def tables() -> dict[str, Any]:  # one options dict per table: Faust's store edits it
        return {
            "partitions": partitions,
            "key_type": bytes,
            "value_type": bytes,
            "options": settings.rocksdb_options(),
        }

    t = _Topology(
        group=settings.app_id,
        half_life_s=engagement.engagement_half_life_s,
        inputs=app.topic(engagement.marketing_topic, engagement.assistant_topic, **RAW),
        dead_letters={
            name: app.topic(f"{name}.dlq", **RAW)
            for name in (engagement.marketing_topic, engagement.assistant_topic)
        },
        out=app.topic(engagement.engagement_topic, **RAW),
        by_campaign=app.topic(
            f"{settings.app_id}-engagement-by-campaign", partitions=partitions, internal=True, **RAW
        ),
        by_session=app.topic(
            f"{settings.app_id}-engagement-by-session", partitions=partitions, internal=True, **RAW
        ),
        party_scores=app.Table("engagement-party", default=None, **tables()),
        campaign_funnels=app.Table("engagement-campaign", default=None, **tables()),
        session_viewers=app.Table("engagement-session", default=None, **tables()),
    )
    _party_agent(app, t)
    _campaign_agent(app, t)
    _session_agent(app, t)


def _party_agent(app: faust.App, t: _Topology) -> None:
    @app.agent(t.inputs, name=PARTY_AGENT)
    async def on_party_event(stream: Any) -> None:
        """Score the party; forward campaign and studio events re-keyed."""
        async for event, cloud, found in _interactions(stream, t, PARTY_AGENT):
            if not found.party_id:
                metrics.count(PARTY_AGENT, "ignored")
                continue
            with _span(event, cloud, t.group):
                at = cloud.time.timestamp()
                outcome = "forwarded"  # no score to keep: on to the campaign and session agents
                if found.weight_key is not None:
                    key = found.party_id.encode()
                    state, fresh = add(
                        _load(t.party_scores.get(key)),
                        cloud.id,
                        WEIGHTS[found.weight_key],
                        at,
                        t.half_life_s,
                    )
                    if fresh:
                        t.party_scores[key] = _dump(state)
                        out = engagement_pb2.EngagementEvent()
                        s = out.engagement_score
                        s.party_id = found.party_id
                        s.score_milli = round(state["score"] * 1000)
                        s.half_life_seconds = round(t.half_life_s)
                        s.as_of.CopyFrom(_ts(state["as_of"]))
                        value, headers = _record(out, found.party_id, state["as_of"], cloud.id)
                        await publish(t.out, key=key, value=value, headers=headers)
                        metrics.produced(PARTY_AGENT, at)
                    outcome = "scored" if fresh else "duplicate"
                headers_in = [
                    (str(k), bytes(v))
                    for k, v in (
                        event.message.headers.items()
                        if hasattr(event.message.headers, "items")
                        else event.message.headers or []
                    )
                ]
                if found.campaign_id and found.funnel_stage:
                    await t.by_campaign.send(
                        key=found.campaign_id.encode(),
                        value=event.message.value,
                        headers=continued(headers_in),
                    )
                if found.session_id and found.studio_kind in ("joined", "left"):
                    await t.by_session.send(
                        key=found.session_id.encode(),
                        value=event.message.value,
                        headers=continued(headers_in),
                    )
                metrics.count(PARTY_AGENT, outcome)


def _campaign_agent(app: faust.App, t: _Topology) -> None:
    @app.agent(t.by_campaign, name=CAMPAIGN_AGENT)
    async def on_campaign_event(stream: Any) -> None:
        """Count the campaign's funnel and publish it."""
        async for event, cloud, found in _interactions(stream, t, CAMPAIGN_AGENT):
            if not found.funnel_stage:
                metrics.count(CAMPAIGN_AGENT, "ignored")
                continue
            with _span(event, cloud, t.group):
                key = found.campaign_id.encode()
                funnel = _load(t.campaign_funnels.get(key)) or dict.fromkeys(FUNNEL_STAGES, 0)
                funnel[found.funnel_stage] += 1
                t.campaign_funnels[key] = _dump(funnel)
                out = engagement_pb2.EngagementEvent()
                f = out.campaign_funnel
                f.campaign_id = found.campaign_id
                f.sent, f.delivered, f.opened = (
                    funnel["sent"],
                    funnel["delivered"],
                    funnel["opened"],
                )
                f.clicked, f.converted = funnel["clicked"], funnel["converted"]
                at = cloud.time.timestamp()
                f.as_of.CopyFrom(_ts(at))
                value, headers = _record(out, found.campaign_id, at, cloud.id)
                await publish(t.out, key=key, value=value, headers=headers)
                metrics.count(CAMPAIGN_AGENT, "counted")
                metrics.produced(CAMPAIGN_AGENT, at)


def _session_agent(app: faust.App, t: _Topology) -> None:
    @app.agent(t.by_session, name=SESSION_AGENT)
    async def on_session_event(stream: Any) -> None:
        """Track who is in a studio session and publish the concurrent viewers."""
        async for event, cloud, found in _interactions(stream, t, SESSION_AGENT):
            with _span(event, cloud, t.group):
                key = found.session_id.encode()
                present = set((_load(t.session_viewers.get(key)) or {}).get("present", []))
                before = len(present)
                if found.studio_kind == "joined":
                    present.add(found.party_id)
                else:
                    present.discard(found.party_id)
                if len(present) == before:
                    metrics.count(SESSION_AGENT, "unchanged")
                    continue  # a repeated join or a leave without a join: nothing changed
                t.session_viewers[key] = _dump({"present": sorted(present)})
                out = engagement_pb2.EngagementEvent()
                v = out.studio_viewers
                v.studio_id, v.session_id = found.studio_id, found.session_id
                v.concurrent = len(present)
                at = cloud.time.timestamp()
                v.as_of.CopyFrom(_ts(at))
                value, headers = _record(out, found.session_id, at, cloud.id)
                await publish(t.out, key=key, value=value, headers=headers)
                metrics.count(SESSION_AGENT, "counted")
                metrics.produced(SESSION_AGENT, at)
