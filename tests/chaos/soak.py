"""Soak: mixed load for a long while; memory, file descriptors and latency stay flat.

The real identity, loan and payroll services and the signals worker run as subprocesses on
the engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``. For ``--minutes`` (full 30,
quick 2): customers arrive at ``--rate`` per second (5; quick: 1), each registers at identity,
is verified, logs in, applies, reads the application back until decided and accepts an
approval; an employer pays a 1,000-item batch every ``--batch-every`` minutes (5; quick: one
at the start and one halfway). Every 10 s the scenario samples each process's resident memory,
its open file descriptors by kind (MongoDB connections, the load's connections to it, and
everything else) and the machine's load average. Checks, after the warm-up (the first sixth):
RSS grows less than 10 %; the descriptors other than the MongoDB pool and the load's
connections grow by at most 10 (a client made per request, a file left open); the pool stays
within its size and the load's connections within the load's limit, and they are closed when
the load closes its client; the p99 of the calls begun in the last 5 minutes is at most 1.2 x
that of the first 5 after the warm-up (quick: last vs first third), judged only when the
machine's load average was alike in both windows (both are printed); and the load's own
invariants (decided once, paid once, ledgers, groups caught up).

    .venv/bin/python -m tests.chaos.soak [--quick] [--minutes 30] [--rate 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.chaos.scenario import Row
from tests.chaos.support import (
    Customer,
    EngineUrls,
    Findings,
    Load,
    Service,
    Suite,
    check_groups,
    check_loans,
    check_payroll,
    conclude,
    engine_urls,
    log,
    quiet_reconnect_logs,
)

SAMPLE_S = 10.0
BATCH_ITEMS = 1_000
RSS_GROWTH_MAX = 0.10
OTHER_FD_GROWTH_MAX = 10  # files, pipes, Kafka and other sockets: flat (a leak grows them)
MONGO_POOL_MAX = 100 + 4  # PyMongo's maxPoolSize default, plus its monitor connections
LOAD_CONNECTIONS = 64  # the load's HTTP client keeps at most this many connections
P99_RATIO_MAX = 1.2
BACKGROUND_DRIFT_MAX = 1.25  # windows compared only when the machine's load average is alike
CALLS = ("login", "apply", "accept", "get-application", "register")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _tcp_peers(pid: int) -> dict[str, tuple[int, int]]:
    """Socket inode -> (local port, remote port) of the process's TCP sockets."""
    peers: dict[str, tuple[int, int]] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
            peers[fields[9]] = (local, remote)
    return peers


@dataclass(frozen=True)
class Fds:
    """A process's open file descriptors by what they are."""

    mongo: int  # connections to MongoDB: the driver's pool, bounded by its maxPoolSize
    inbound: int  # HTTP connections accepted on the service's port: the load's, bounded
    other: int  # files, pipes, Kafka and any other socket: flat unless something leaks

    @property
    def total(self) -> int:
        return self.mongo + self.inbound + self.other


def open_fds(pid: int, *, port: int, mongo_port: int) -> Fds:
    peers = _tcp_peers(pid)
    mongo = inbound = other = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        local, remote = peers.get(target[8:-1], (0, 0)) if target.startswith("socket:[") else (0, 0)
        if remote == mongo_port:
            mongo += 1
        elif local == port and remote:
            inbound += 1
        else:
            other += 1
    return Fds(mongo, inbound, other)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    at: float  # seconds since the load began
    rss_kib: int
    fds: Fds
    cpu_s: float


@dataclass
class Samples:
    """Per process, every ``SAMPLE_S``; and the machine's 1-minute load average."""

    mongo_port: int
    by_process: dict[str, list[Sample]] = field(default_factory=dict)
    load_average: list[tuple[float, float]] = field(default_factory=list)

    def take(self, since: float, services: dict[str, Service]) -> None:
        at = time.monotonic() - since
        self.load_average.append((at, os.getloadavg()[0]))
        for name, service in services.items():
            if service.pid:
                try:
                    fds = open_fds(service.pid, port=service.port, mongo_port=self.mongo_port)
                    point = Sample(at, rss_kib(service.pid), fds, cpu_s(service.pid))
                except OSError:
                    continue
                self.by_process.setdefault(name, []).append(point)

    def mean_load(self, start: float, end: float) -> float:
        values = [v for at, v in self.load_average if start <= at < end]
        return statistics.fmean(values) if values else 0.0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)] if ordered else 0.0


def check_resources(
    samples: Samples, warmup: float, findings: Findings, drained: dict[str, Fds]
) -> list[str]:
    """RSS and file descriptors after the warm-up: what grew, and whether it may."""
    growth: list[str] = []
    for name, points in samples.by_process.items():
        settled = [p for p in points if p.at >= warmup]
        if len(settled) < 4:
            findings.fail(f"{name}: {len(settled)} samples after the warm-up, too few to judge")
            continue
        first = statistics.median(p.rss_kib for p in settled[:3])
        last = statistics.median(p.rss_kib for p in settled[-3:])
        rise = last / first - 1
        begin, end = settled[0].fds, settled[-1].fds
        peak_mongo = max(p.fds.mongo for p in settled)
        peak_inbound = max(p.fds.inbound for p in settled)
        other_rise = max(p.fds.other for p in settled[-3:]) - begin.other
        after = drained.get(name)
        growth.append(
            f"{name} RSS {first / 1024:.0f}→{last / 1024:.0f} MiB ({rise:+.1%}), fds {begin.total}→{end.total}"
            f" (MongoDB pool {begin.mongo}→{end.mongo}, load's connections {begin.inbound}→{end.inbound}"
            f"{f' and {after.inbound} once it closed' if after else ''}, other {begin.other}→{end.other})"
        )
        if rise >= RSS_GROWTH_MAX:
            findings.fail(f"{name}: RSS grew {rise:.1%} after warm-up (limit {RSS_GROWTH_MAX:.0%})")
        if other_rise > OTHER_FD_GROWTH_MAX:
            findings.fail(
                f"{name}: file descriptors other than the MongoDB pool and the load's connections "
                f"grew by {other_rise} after warm-up ({begin.other} → {end.other})"
            )
        if peak_mongo > MONGO_POOL_MAX:
            findings.fail(f"{name}: {peak_mongo} MongoDB connections, more than one pool holds")
        if peak_inbound > LOAD_CONNECTIONS:
            findings.fail(
                f"{name}: {peak_inbound} inbound connections, the load opens at most {LOAD_CONNECTIONS}"
            )
        if after is not None and after.inbound > 2:
            findings.fail(
                f"{name}: {after.inbound} inbound connections left open after the load closed its client"
            )
    return growth


async def soak(
    urls: EngineUrls,
    *,
    minutes: float,
    rate: float,
    batch_every_s: float,
    window_s: float,
    batch_items: int = BATCH_ITEMS,
    judge_latency: bool = True,
) -> tuple[Row | None, list[str], Path]:
    """Run the soak on ``urls``' engines: its row, the invariants that failed, its log folder."""
    duration = minutes * 60
    warmup = duration / 6
    workdir = Path(tempfile.mkdtemp(prefix="zc-chaos-soak-"))
    suite = Suite(urls, workdir)
    findings = Findings()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(urls.mongodb, tz_aware=True)
    mongo_port = int(
        urls.mongodb.split("//", 1)[1].split("/", 1)[0].split(",")[0].rsplit(":", 1)[1]
    )
    load: Load | None = None
    row: Row | None = None
    try:
        await suite.start()
        load = Load(suite)
        enterprise, rep = await load.employer()
        log(
            f"suite up (logs in {workdir}); {minutes:g} min at {rate}/s, a batch every {batch_every_s:.0f} s"
        )
        samples = Samples(mongo_port)
        applied: dict[str, str] = {}
        parties: list[str] = []
        batches: dict[str, int] = {}
        failed: list[BaseException] = []
        journeys: set[asyncio.Task[None]] = set()
        in_flight: list[tuple[float, int]] = []  # (seconds since start, journeys not finished)
        began = time.monotonic()

        async def arrive() -> None:
            customer: Customer = await load.customer()
            parties.append(customer.party_id)
            await load.journey(customer, applied)

        submitted: set[asyncio.Task[None]] = set()

        async def pay(seed: int) -> None:
            batch = await load.payroll_batch(enterprise, rep, batch_items, seed=seed)
            batches[batch] = batch_items

        def done(task: asyncio.Task[None]) -> None:
            journeys.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())  # type: ignore[arg-type]

        next_batch, next_sample, n = began, began, 0
        while (now := time.monotonic()) < began + duration:
            if now >= next_sample:
                samples.take(began, suite.services)
                in_flight.append((now - began, len(journeys)))
                next_sample += SAMPLE_S
            if now >= next_batch:  # submitted beside the arrivals, not in their way
                submit = asyncio.create_task(pay(len(submitted) + 10))
                submitted.add(submit)
                next_batch += batch_every_s
            target = began + n / rate
            if time.monotonic() >= target:
                task = asyncio.create_task(arrive())
                journeys.add(task)
                task.add_done_callback(done)
                n += 1
            await asyncio.sleep(min(0.05, max(0.0, target - time.monotonic())))
        samples.take(began, suite.services)
        log(f"{n} customers arrived; waiting for the last journeys ({len(journeys)} under way)")
        if journeys or submitted:
            await asyncio.wait(journeys | submitted, timeout=300)
        failed += [t.exception() for t in submitted if t.done() and t.exception()]  # type: ignore[misc]
        findings.failures += [f"a journey failed: {e!r}" for e in failed[:5]]
        findings.lost += len(failed)
        await load.close()
        await check_payroll(suite, mongo, batches, findings, within_s=600)
        await asyncio.sleep(5)
        await check_loans(suite, mongo, applied, parties, findings)
        await check_groups(suite, findings, within_s=120)
        # Once the work has settled (a request still queued holds its connection until it is
        # answered), the services hold none of the load's connections.
        drained = {}
        for name, service in suite.services.items():
            if service.pid:
                drained[name] = open_fds(service.pid, port=service.port, mongo_port=mongo_port)
        growth = check_resources(samples, warmup, findings, drained)

        # Calls by when they began, so a window holds what the load offered in it.
        calls = [(at - ms / 1000 - began, ms) for at, op, ms in load.stats.latencies if op in CALLS]
        first_w, last_w = (warmup, warmup + window_s), (duration - window_s, duration)
        first_p99 = p99([ms for t, ms in calls if first_w[0] <= t < first_w[1]])
        last_p99 = p99([ms for t, ms in calls if last_w[0] <= t < last_w[1]])
        ratio = last_p99 / first_p99 if first_p99 else 0.0
        first_load, last_load = samples.mean_load(*first_w), samples.mean_load(*last_w)
        backlog = [k for at, k in in_flight if first_w[0] <= at] or [0]
        cpu = {
            name: (points[-1].cpu_s - points[0].cpu_s) / max(1.0, points[-1].at - points[0].at)
            for name, points in samples.by_process.items()
        }
        # The ratio measures the suite only when the rest of the machine is alike in both
        # windows: on a shared machine a busier last window says nothing about the suite.
        alike = last_load <= BACKGROUND_DRIFT_MAX * first_load
        if ratio <= P99_RATIO_MAX:
            verdict = f"within {P99_RATIO_MAX}"
        elif alike:
            verdict = f"above {P99_RATIO_MAX}"
            if judge_latency:
                findings.fail(
                    f"p99 of the last window {last_p99:.0f} ms > {P99_RATIO_MAX} x the first {first_p99:.0f} ms"
                )
        else:
            verdict = f"above {P99_RATIO_MAX}, not judged: the machine's load average rose more than {BACKGROUND_DRIFT_MAX}x"
        if not judge_latency:
            verdict += ", printed only"
        row = Row(
            "soak", 0, findings.operations, findings.lost, findings.duplicated, None,
            f"{minutes:g} min, {n} customers ({n / duration:.1f}/s), {len(batches)} batches; p99 of the calls begun in "
            f"the first window after warm-up {first_p99:.0f} ms, in the last {last_p99:.0f} ms (x{ratio:.2f}, "
            f"{verdict}; load average {first_load:.1f} → {last_load:.1f}); journeys under way "
            f"{backlog[0]} → {backlog[-1]} (max {max(backlog)}); the suite's CPU "
            f"{sum(cpu.values()):.2f} cores ({', '.join(f'{k} {v:.2f}' for k, v in cpu.items())}); " + "; ".join(growth),
        )  # fmt: skip
    finally:
        if load is not None:
            await load.close()
        suite.stop()
        await suite.drop()
        await mongo.close()
    return row, findings.failures, workdir


async def scenario(args: argparse.Namespace) -> int:
    minutes = args.minutes or (2.0 if args.quick else 30.0)
    # Quick runs beside the rest of CI on two cores: 5 journeys/s (7 calls each) is above
    # what such a machine carries, and a soak measures a load that is carried.
    rate = args.rate or (1.0 if args.quick else 5.0)
    duration = minutes * 60
    row, failures, workdir = await soak(
        engine_urls(),
        minutes=minutes,
        rate=rate,
        batch_every_s=duration / 2 if args.quick else args.batch_every * 60,
        window_s=duration / 3 if args.quick else 300.0,
    )
    return conclude(workdir, [row] if row else [], failures)


def main() -> int:
    quiet_reconnect_logs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="customers per second (5; quick: 1)"
    )
    parser.add_argument("--batch-every", type=float, default=5.0, help="minutes between batches")
    return asyncio.run(scenario(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
