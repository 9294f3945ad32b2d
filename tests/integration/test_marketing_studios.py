"""Live studios and engagement signals on the real engines: the Faust worker runs as a
subprocess on this test's topics; a stream of viewer events gives the session statistics and
the studio's daily reach; the signals' concurrent viewers and the decayed engagement score
come back into marketing through signals.engagement.v1."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.catalog_keys import check_topic_holding
from tests.integration.harness import Engines, eventually, start_signals_worker, stop_process
from tests.integration.test_marketing_support import (
    Clock,
    MarketingTopics,
    marketing_settings,
    post,
    put,
    running_marketing,
)
from zerocontact.platform.ids import new_id

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 Shanghai
HALF_LIFE = timedelta(days=7)  # the documented default


@pytest.fixture
def signals_worker(
    engines: Engines, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Callable[[MarketingTopics, str], int]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(topics: MarketingTopics, risk_topic: str) -> int:
        process, port = start_signals_worker(
            engines,
            app_id=unique_name("signals"),
            data_dir=tmp_path / "signals",
            log=tmp_path / "signals.log",
            topics={
                "loan": topics.loan,
                "identity": topics.identity,
                "risk": risk_topic,
                "marketing": topics.marketing,
                "engagement": topics.engagement,
            },
        )
        processes.append(process)
        return port

    yield start
    for process in processes:
        stop_process(process)


async def test_studio_statistics_signals_and_engagement_decay(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
    signals_worker: Callable[[MarketingTopics, str], int],
) -> None:
    # Six partitions: the signals app co-partitions every input with its tables.
    names = [
        await create_topic(p, partitions=6)
        for p in ("identity", "loan", "payroll", "mkt", "mktnotif", "engage", "assistant", "risk")
    ]
    topics = MarketingTopics(*names[:7])
    port = signals_worker(topics, names[7])

    async def signals_ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                r = await client.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.TransportError:
            return False
        return r.status_code == 200

    await eventually(signals_ready, within_s=90, interval=0.3)
    settings = marketing_settings(engines, topics, unique_name)
    async with running_marketing(settings, Clock(T0)) as svc:
        c = svc.client
        await put(
            c,
            "/v1/studios/sz-01",
            {"studio_id": "sz-01", "name": "深圳云工作室", "branch": "Shenzhen"},
        )
        session = "sz-01-s1"
        created = await post(
            c,
            "/v1/studios/sz-01/sessions",
            {
                "session_id": session,
                "host": "host-7",
                "starts_at": T0.isoformat(),
                "product_ids": ["wealth-r2"],
            },
        )
        assert created.status_code == 201, created.text
        viewers = [f"viewer-{i:02d}-{new_id()[-6:]}" for i in range(12)]
        stream: list[dict[str, Any]] = []

        def ev(party: str, kind: str, seconds: float, product: str = "") -> None:
            stream.append(
                {
                    "event_id": new_id(),
                    "party_id": party,
                    "kind": kind,
                    "product_id": product,
                    "at": (T0 + timedelta(seconds=seconds)).isoformat(),
                }
            )

        for i, v in enumerate(viewers):
            ev(v, "joined", i)
        for v in viewers[:4]:
            ev(v, "commented", 30)
        for v in viewers[:3]:
            ev(v, "card_clicked", 40, "wealth-r2")
        ev(viewers[0], "card_clicked", 41, "wealth-r2")  # a second click of the same viewer
        ev(viewers[1], "converted", 50, "wealth-r2")
        for i, v in enumerate(viewers[:5]):
            ev(v, "left", 100 + i)  # watched 100 s each (joined at i, left at 100 + i)
        for item in stream:
            r = await c.post(f"/v1/studio-sessions/{session}/events", json=item)
            assert r.status_code == 200, r.text
        # A redelivered viewer event changes nothing.
        again = await c.post(f"/v1/studio-sessions/{session}/events", json=stream[0])
        bad = await c.post(
            f"/v1/studio-sessions/{session}/events", json=stream[0] | {"kind": "danced"}
        )
        assert bad.status_code == 422
        stats = again.json()["stats"]
        assert stats == {
            "unique_viewers": 12,
            "concurrent_now": 7,
            "concurrent_peak": 12,
            "comments": 4,
            "card_clicks": 4,
            "click_through_rate": round(3 / 12, 4),
            "conversions": 1,
            "watch_seconds_total": 500.0,
        }
        reach = (await c.get("/v1/studios/sz-01/reach", params={"day": "20261123"})).json()
        assert reach["reach"] == 12

        # The signals app's concurrent viewers reach marketing.
        async def signalled() -> Any:
            body = (await c.get(f"/v1/studio-sessions/{session}")).json()
            return body["signalled_concurrent"] == 7

        await eventually(signalled, within_s=60, interval=0.3)

        # Decay: a join at T0 (1 point) and a card click one half-life later (3 points)
        # give 1 * 0.5 + 3 = 3.5 at T0 + 7 days (event time, so no waiting).
        fan = f"fan-{new_id()[-8:]}"
        for kind, at in (("joined", T0), ("card_clicked", T0 + HALF_LIFE)):
            r = await c.post(
                f"/v1/studio-sessions/{session}/events",
                json={
                    "event_id": new_id(),
                    "party_id": fan,
                    "kind": kind,
                    "product_id": "wealth-r2",
                    "at": at.isoformat(),
                },
            )
            assert r.status_code == 200

        async def scored() -> Any:
            r = await c.get(f"/v1/parties/{fan}/profile")
            return r.status_code == 200 and r.json()["engagement_milli"] == 3500

        await eventually(scored, within_s=60, interval=0.3)
        profile = (await c.get(f"/v1/parties/{fan}/profile")).json()
        assert datetime.fromisoformat(profile["engagement_as_of"]).astimezone(UTC) == T0 + HALF_LIFE

    # Every engagement record the signals app wrote is keyed as proto/topics.toml says.
    expected = {"EngagementScore", "StudioViewers"}
    checked = await check_topic_holding(
        engines.kafka_bootstrap, topics.engagement, "signals.engagement.v1", expected
    )
    assert expected <= set(checked), checked
