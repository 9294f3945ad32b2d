"""Faust state: the signals worker killed with its windows open, and a rebalance under load.

One input (parties with their loan applications, repayments and failed logins; every device and
address belongs to one party, so an application's features depend only on its party's own,
ordered, partition) is fed to three pipelines of the real signals worker on topics of their own:

- **baseline**: one worker, never disturbed;
- **kill -9**: one worker, ``SIGKILL``-ed while records are still arriving and being processed
  (its windowed tables hold counts, some changes not yet committed), restarted with an empty
  data directory, so whatever its tables hold afterwards came from their changelog topics; the
  time from the restart to ``/readyz`` answering 200 (tables recovered) is the row's recovery;
- **rebalance**: one worker, a second joins under load (the partitions are split), then the
  first leaves (they move back).

Then every party's features (the worker's features page) and every application's assessment
(``signals.risk.v1``, what loan consumes) must equal the baseline's: ``lost`` counts
applications never assessed and feature counts short of the baseline, ``duplicated`` counts
applications assessed twice with different ids or results and feature counts above it.

    .venv/bin/python -m tests.chaos.faust_state [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from tests.chaos.scenario import (
    Row,
    chaos_engines,
    create_topics,
    finish,
    log_dir,
    remove_run,
    run_token,
)
from tests.integration.harness import Engines, eventually
from tests.integration.test_signals_pipeline import (
    PARTITIONS,
    RiskTopic,
    Topics,
    Worker,
    application,
    failed_login,
    repayment,
)
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.signals.settings import SignalsSettings

SCENARIO = "faust_state"
# The worker's default: a killed member's partitions move on once it has been silent this long.
SESSION_TIMEOUT_S = SignalsSettings.model_fields["session_timeout_s"].default


@dataclass(frozen=True)
class Input:
    """One record of the input: which topic ("loan"/"identity"), its key, its event."""

    topic: str
    party: str
    event: CloudEvent


def build_input(seed: int, parties: int) -> tuple[list[Input], list[str], set[str]]:
    """(records in a fixed order, party ids, application ce_ids) for ``parties`` parties."""
    rng = random.Random(seed)
    by_party: list[list[Input]] = []
    names = [f"party-chaos-{seed}-{n:04d}" for n in range(parties)]
    applications: set[str] = set()
    for n, party in enumerate(names):
        device, address = f"dev-{seed}-{n}", f"198.18.{n // 250}.{n % 250}"
        records: list[Input] = []
        for r in range(rng.randint(0, 3)):
            event = repayment(
                party, days_late=rng.choice([0, 0, 3, 12]), repayment_id=f"rep-{n}-{r}"
            )
            records.append(Input("loan", party, event))
        records += [Input("identity", party, failed_login(party)) for _ in range(rng.randint(0, 6))]
        for a in range(rng.randint(1, 3)):
            ce_id = f"app-{seed}-{n}-{a}"
            applications.add(ce_id)
            records.append(
                Input(
                    "loan", party, application(party, device=device, address=address, ce_id=ce_id)
                )
            )
        rng.shuffle(records)  # one party's records stay on one partition, in this order
        by_party.append(records)
    ordered: list[Input] = []
    while any(by_party):  # parties interleaved, as live traffic would be
        for records in by_party:
            if records:
                ordered.append(records.pop(0))
    return ordered, names, applications


@dataclass
class Pipeline:
    """One worker set on topics of its own, the producer feeding it, its risk topic read back."""

    name: str
    engines: Engines
    topics: Topics
    app_id: str
    data_root: Path
    workers: list[Worker] = field(default_factory=list)
    risk: RiskTopic | None = None

    def worker(self) -> Worker:
        worker = Worker(
            self.engines, self.topics, self.app_id, self.data_root / f"w{len(self.workers)}",
            session_timeout_s=SESSION_TIMEOUT_S,
        )  # fmt: skip
        worker.data_root.mkdir(parents=True, exist_ok=True)
        self.workers.append(worker)
        return worker

    async def start_reading(self) -> None:
        self.risk = RiskTopic(self.engines.kafka_bootstrap, self.topics.risk)
        await self.risk.start()

    def assessments(self) -> dict[str, list[Any]]:
        """Application ce_id -> the RiskAssessments published for it."""
        assert self.risk is not None
        found: dict[str, list[Any]] = defaultdict(list)
        from zerocontact.signals.v1 import risk_pb2

        for record in self.risk.records:
            event = risk_pb2.RiskEvent.FromString(record.value)
            if event.WhichOneof("event") == "risk_assessment":
                found[event.risk_assessment.application_event_id].append(event.risk_assessment)
        return found

    async def features(self, http: httpx.AsyncClient, party: str) -> dict[str, str]:
        for worker in self.workers:
            if worker.process is None or worker.process.poll() is not None:
                continue
            for _ in range(5):  # a loaded machine answers slowly now and then
                try:
                    answer = await http.get(f"{worker.url}/signals/v1/parties/{party}/features")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(1)
            else:
                continue
            if answer.status_code == 200:
                return {f["name"]: f["value"] for f in answer.json()["features"]}
        raise RuntimeError(f"{self.name}: no worker answers the features of {party}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


async def send(
    producer: AIOKafkaProducer, topics: Topics, records: list[Input], *, per_s: float = 0
) -> None:
    """Produce ``records`` in order (``per_s`` > 0: at that rate)."""
    began = time.monotonic()
    for n, item in enumerate(records):
        topic = topics.loan if item.topic == "loan" else topics.identity
        await producer.send(
            topic, item.event.data, key=item.party.encode(), headers=item.event.headers()
        )
        if per_s:
            lag = began + n / per_s - time.monotonic()
            if lag > 0:
                await producer.flush()
                await asyncio.sleep(lag)
    await producer.flush()


async def readyz(worker: Worker) -> int:
    """The worker's /readyz status (0: not answering)."""
    assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{worker.url}/readyz")).status_code
    except httpx.TransportError:
        return 0


async def timed_ready(worker: Worker, *, within_s: float = 600) -> float:
    """Seconds from now until the worker's /readyz answers 200 (its tables recovered)."""
    began = time.monotonic()

    async def ready() -> bool:
        return await readyz(worker) == 200

    await eventually(ready, within_s=within_s, interval=0.1)
    return time.monotonic() - began


async def timed_rebalance(worker: Worker) -> float:
    """Seconds until ``worker`` went through a rebalance (not ready, then ready again)."""
    began = time.monotonic()

    async def not_ready() -> bool:
        return await readyz(worker) != 200

    try:
        await eventually(not_ready, within_s=15, interval=0.05)
    except AssertionError:
        return 0.0  # took the partitions over without ever answering "not ready"
    await timed_ready(worker)
    return time.monotonic() - began


def compare(row: Row, baseline: Pipeline, other: Pipeline, applications: set[str],
            base_features: dict[str, dict[str, str]], features: dict[str, dict[str, str]]) -> None:  # fmt: skip
    """Count what ``other`` lost or duplicated against ``baseline``."""
    expected, seen = baseline.assessments(), other.assessments()
    for ce_id in sorted(applications):
        mine = seen.get(ce_id, [])
        if not mine:
            row.lost += 1
            row.fail(f"{other.name}: application {ce_id} never assessed")
            continue
        results = {(a.assessment_id, a.score, a.band) for a in mine}
        if len(results) > 1:
            row.duplicated += 1
            row.fail(
                f"{other.name}: application {ce_id} assessed {len(results)} ways: {sorted(results)}"
            )
        base = expected[ce_id][0]
        got = mine[0]
        if (got.assessment_id, got.score, got.band) != (base.assessment_id, base.score, base.band):
            row.fail(
                f"{other.name}: {ce_id} scored {got.score}/{got.band}, baseline {base.score}/{base.band}"
            )
        base_values = {f.name: f.value for f in base.features}
        for f in got.features:
            want = base_values.get(f.name)
            if want is not None and want != f.value:
                _count(row, f"{other.name}: {ce_id} {f.name}", want, f.value)
    for party, values in base_features.items():
        for name, want in values.items():
            have = features[party].get(name)
            if have != want:
                _count(row, f"{other.name}: {party} {name}", want, have)


def _count(row: Row, what: str, want: str, have: str | None) -> None:
    try:
        difference = int(have or 0) - int(want)
    except ValueError:
        row.fail(f"{what} = {have}, baseline {want}")
        return
    if difference > 0:
        row.duplicated += difference
    elif difference < 0:
        row.lost -= difference
    row.fail(f"{what} = {have}, baseline {want}")


async def run(engines: Engines, *, parties: int, kills: int) -> list[Row]:
    token = run_token("faust")
    logs = log_dir(token)
    records, names, applications = build_input(seed=int(time.time()) % 100_000, parties=parties)

    def topics(name: str) -> Topics:
        return Topics(f"{token}-{name}-loan", f"{token}-{name}-identity", f"{token}-{name}-risk")

    pipelines = {
        name: Pipeline(name, engines, topics(name), f"{token}-{name}", logs / name)
        for name in ("baseline", "kill9", "rebalance")
    }
    # The engagement pipeline's topics too (no traffic on them): the worker waits for them.
    quiet = {"MARKETING": f"{token}-marketing", "ENGAGEMENT": f"{token}-engagement"}
    os.environ.update({f"ZC_SIGNALS_{name}_TOPIC": topic for name, topic in quiet.items()})
    await create_topics(
        engines,
        dict.fromkeys(quiet.values(), PARTITIONS)
        | {
            t: PARTITIONS
            for p in pipelines.values()
            for t in (p.topics.loan, p.topics.identity, p.topics.risk)
        },
    )
    baseline, killed, rebalanced = pipelines["baseline"], pipelines["kill9"], pipelines["rebalance"]
    producer = AIOKafkaProducer(
        bootstrap_servers=engines.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    kill_row, rebalance_row = Row(f"{SCENARIO}:kill9"), Row(f"{SCENARIO}:rebalance")
    recoveries: list[float] = []
    rebalance_s: float | None = None
    logins = [r for r in records if r.topic == "identity"]
    records = [r for r in records if r.topic != "identity"]
    failed = {party: sum(1 for r in logins if r.party == party) for party in names}

    async def logins_applied(p: Pipeline) -> None:
        async def counted() -> bool:
            async with httpx.AsyncClient(timeout=30) as http:
                for party, n in failed.items():
                    if n and (await p.features(http, party)).get(
                        "failed_authentications_1h"
                    ) != str(n):
                        return False
            return True

        await eventually(counted, within_s=300, interval=1.0)

    async def all_assessed(p: Pipeline) -> bool:
        return applications <= set(p.assessments())

    async def settled(p: Pipeline) -> dict[str, dict[str, str]]:
        """Once every application is assessed: each party's features."""
        await eventually(lambda: all_assessed(p), within_s=300, interval=0.5)
        await asyncio.sleep(3)  # a late duplicate would show up here
        async with httpx.AsyncClient(timeout=30) as http:
            return {party: await p.features(http, party) for party in names}

    try:
        # Baseline and kill -9 side by side (two workers), then the rebalance (two workers).
        first = [baseline.worker(), killed.worker()]
        for worker in first:
            worker.start()
        for p in pipelines.values():
            await p.start_reading()
        await asyncio.gather(*(timed_ready(w) for w in first))

        # Identity's records first, applied before any application arrives: the two topics
        # are not ordered against each other, so a party's failed logins would otherwise be
        # counted before or after its applications at random, in any run.
        for p in (baseline, killed):
            await send(producer, p.topics, logins)
        await asyncio.gather(*(logins_applied(p) for p in (baseline, killed)))
        await send(producer, baseline.topics, records)
        # kill -9: the worker dies while records arrive, `kills` times, each restart from an
        # empty data directory (tables from the changelogs only).
        cuts = [len(records) * (k + 1) // (kills + 1) for k in range(kills)] + [len(records)]
        done = 0
        for k, cut in enumerate(cuts):
            await send(producer, killed.topics, records[done:cut])
            done = cut
            if k == kills:
                break
            await asyncio.sleep(random.uniform(0.2, 1.5))  # mid-processing, windows open
            current = killed.workers[-1]
            current.kill()
            current.start()  # a new, empty data directory (Worker.start)
            recoveries.append(await timed_ready(current))
            kill_row.faults += 1
        base_features = await settled(baseline)
        compare(kill_row, baseline, killed, applications, base_features, await settled(killed))
        kill_row.operations = len(records) + len(logins)
        baseline.stop()
        killed.stop()

        try:
            # Rebalance under load: a second worker joins, then the first leaves.
            leader = rebalanced.worker()
            leader.start()
            await timed_ready(leader)
            await send(producer, rebalanced.topics, logins)
            await logins_applied(rebalanced)
            rate = max(1.0, len(records) / 150)  # ~150 s of traffic: both changes under it
            feeding = asyncio.create_task(send(producer, rebalanced.topics, records, per_s=rate))
            await asyncio.sleep(3)
            second = rebalanced.worker()
            second.start()
            await timed_ready(second)
            rebalance_row.faults += 1
            await asyncio.sleep(3)
            leaving = asyncio.to_thread(leader.stop)  # its partitions move over
            rebalance_s = await timed_rebalance(second)
            await leaving
            rebalance_row.faults += 1
            if feeding.done():
                rebalance_row.fail("the traffic ended before the second rebalance: not under load")
            await feeding
            features = await settled(rebalanced)
            compare(rebalance_row, baseline, rebalanced, applications, base_features, features)
            rebalance_row.operations = len(records) + len(logins)
        except Exception as exc:  # the kill -9 row still counts; this one says what broke
            rebalance_row.fail(f"rebalance phase did not finish: {exc!r}")
    finally:
        await producer.stop()
        for p in pipelines.values():
            if p.risk is not None:
                await p.risk.stop()
            p.stop()
    kill_row.recover_s = max(recoveries) if recoveries else None
    kill_row.detail = (
        f"{len(applications)} applications of {parties} parties; worker killed {kill_row.faults}x"
        f" mid-stream, tables recovered from the changelogs in"
        f" {', '.join(f'{s:.1f}' for s in recoveries)} s; features and assessments equal the baseline's"
        if kill_row.passed
        else f"{len(applications)} applications of {parties} parties; see stderr"
    )
    rebalance_row.recover_s = rebalance_s
    rebalance_row.detail = (
        "a second worker joined and the first left under load;"
        " each application assessed once, same ids and results as the baseline"
        if rebalance_row.passed
        else "see stderr"
    )
    if kill_row.passed and rebalance_row.passed:
        await remove_run(engines, token)
    return [kill_row, rebalance_row]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 parties and one kill")
    args = parser.parse_args()
    parties, kills = (30, 1) if args.quick else (300, 3)
    with chaos_engines() as engines:
        rows = asyncio.run(run(engines, parties=parties, kills=kills))
    return finish(rows)


if __name__ == "__main__":
    sys.exit(main())
