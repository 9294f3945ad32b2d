"""Soak: mixed load for a long while; memory, file descriptors and latency stay flat.

The real identity, loan and payroll services and the signals worker run as subprocesses on
the engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``. For ``--minutes`` (full 30,
quick 2): customers arrive at ``--rate`` per second (5), each registers at identity, is
verified, logs in, applies, reads the application back until decided and accepts an
approval; an employer pays a 1,000-item batch every ``--batch-every`` minutes (5; quick: one
at the start and one halfway). Every 10 s the scenario samples each process's resident memory
and open file descriptors (/proc). Checks: RSS after the warm-up (the first sixth) grows less
than 10 %; open file descriptors stay flat (at most +20); the p99 of the customers' calls over
the last 5 minutes is at most 1.2 x that of the first 5 after warm-up (quick: last vs first
third); and the load's own invariants (decided once, paid once, ledgers, groups caught up).

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

from tests.chaos.support import (
    Customer,
    Findings,
    Load,
    Row,
    Suite,
    check_groups,
    check_loans,
    check_payroll,
    conclude,
    engine_urls,
    log,
)

SAMPLE_S = 10.0
BATCH_ITEMS = 1_000
RSS_GROWTH_MAX = 0.10
FD_GROWTH_MAX = 20
P99_RATIO_MAX = 1.2


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Samples:
    """(seconds since start, RSS KiB, open fds) per process."""

    by_process: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)

    def take(self, since: float, pids: dict[str, int | None]) -> None:
        for name, pid in pids.items():
            if pid:
                try:
                    point = (time.monotonic() - since, rss_kib(pid), open_fds(pid))
                except OSError:
                    continue
                self.by_process.setdefault(name, []).append(point)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)] if ordered else 0.0


async def scenario(args: argparse.Namespace) -> int:
    urls = engine_urls()
    minutes = args.minutes or (2.0 if args.quick else 30.0)
    # Quick runs beside the rest of CI on two cores: 5 journeys/s (7 calls each) is above
    # what such a machine carries, and a soak measures a load that is carried.
    args.rate = args.rate or (2.0 if args.quick else 5.0)
    duration = minutes * 60
    warmup = duration / 6
    window = duration / 3 if args.quick else 300.0
    batch_every = (duration / 2) if args.quick else args.batch_every * 60
    workdir = Path(tempfile.mkdtemp(prefix="zc-chaos-soak-"))
    suite = Suite(urls, workdir)
    findings = Findings()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(urls.mongodb, tz_aware=True)
    load: Load | None = None
    row: Row | None = None
    try:
        await suite.start()
        load = Load(suite)
        enterprise, rep = await load.employer()
        log(
            f"suite up (logs in {workdir}); {minutes:g} min at {args.rate}/s, a batch every {batch_every:.0f} s"
        )
        samples = Samples()
        applied: dict[str, str] = {}
        parties: list[str] = []
        batches: dict[str, int] = {}
        failed: list[BaseException] = []
        journeys: set[asyncio.Task[None]] = set()
        began = time.monotonic()

        async def arrive() -> None:
            customer: Customer = await load.customer()
            parties.append(customer.party_id)
            await load.journey(customer, applied)

        submitted: set[asyncio.Task[None]] = set()

        async def pay(seed: int) -> None:
            batch = await load.payroll_batch(enterprise, rep, BATCH_ITEMS, seed=seed)
            batches[batch] = BATCH_ITEMS

        def done(task: asyncio.Task[None]) -> None:
            journeys.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())  # type: ignore[arg-type]

        next_batch, next_sample, n = began, began, 0
        while (now := time.monotonic()) < began + duration:
            if now >= next_sample:
                samples.take(began, {s: suite.services[s].pid for s in suite.services})
                next_sample += SAMPLE_S
            if now >= next_batch:  # submitted beside the arrivals, not in their way
                submit = asyncio.create_task(pay(len(submitted) + 10))
                submitted.add(submit)
                next_batch += batch_every
            target = began + n / args.rate
            if time.monotonic() >= target:
                task = asyncio.create_task(arrive())
                journeys.add(task)
                task.add_done_callback(done)
                n += 1
            await asyncio.sleep(min(0.05, max(0.0, target - time.monotonic())))
        samples.take(began, {s: suite.services[s].pid for s in suite.services})
        log(f"{n} customers arrived; waiting for the last journeys")
        if journeys or submitted:
            await asyncio.wait(journeys | submitted, timeout=300)
        failed += [t.exception() for t in submitted if t.done() and t.exception()]  # type: ignore[misc]
        findings.failures += [f"a journey failed: {e!r}" for e in failed[:5]]
        findings.lost += len(failed)
        await check_payroll(suite, mongo, batches, findings, within_s=600)
        await asyncio.sleep(5)
        await check_loans(suite, mongo, applied, parties, findings)
        await check_groups(suite, findings, within_s=120)

        growth: list[str] = []
        for name, points in samples.by_process.items():
            settled = [p for p in points if p[0] >= warmup]
            if len(settled) < 4:
                continue
            first = statistics.median(p[1] for p in settled[:3])
            last = statistics.median(p[1] for p in settled[-3:])
            fd_first, fd_last = settled[0][2], max(p[2] for p in settled[-3:])
            rise = last / first - 1
            growth.append(
                f"{name} RSS {first / 1024:.0f}→{last / 1024:.0f} MiB ({rise:+.1%}), fds {fd_first}→{fd_last}"
            )
            if rise >= RSS_GROWTH_MAX:
                findings.fail(
                    f"{name}: RSS grew {rise:.1%} after warm-up (limit {RSS_GROWTH_MAX:.0%})"
                )
            if fd_last - fd_first > FD_GROWTH_MAX:
                findings.fail(f"{name}: open file descriptors {fd_first} → {fd_last}")
        calls = [
            (at - began, ms)
            for at, op, ms in load.stats.latencies
            if op in ("login", "apply", "accept", "get-application", "register")
        ]
        first_p99 = p99([ms for t, ms in calls if warmup <= t < warmup + window])
        last_p99 = p99([ms for t, ms in calls if t >= duration - window])
        ratio = last_p99 / first_p99 if first_p99 else 0.0
        if ratio > P99_RATIO_MAX:
            findings.fail(
                f"p99 of the last window {last_p99:.0f} ms > {P99_RATIO_MAX} x the first {first_p99:.0f} ms"
            )
        row = Row(
            "soak", 0, findings.operations, findings.lost, findings.duplicated, None,
            f"{minutes:g} min, {n} customers ({n / duration:.1f}/s), {len(batches)} batches; p99 first {first_p99:.0f} ms, "
            f"last {last_p99:.0f} ms (x{ratio:.2f}); " + "; ".join(growth),
        )  # fmt: skip
    finally:
        if load is not None:
            await load.close()
        suite.stop()
        await suite.drop()
        await mongo.close()
    return conclude(workdir, [row] if row else [], findings.failures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="customers per second (5; quick: 2)"
    )
    parser.add_argument("--batch-every", type=float, default=5.0, help="minutes between batches")
    return asyncio.run(scenario(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
