"""Kill -9 under load: the broker, FerretDB, each service and the signals worker, one at a time
and two together, killed with SIGKILL and started again, while applications arrive at 10/s and
a payroll batch runs.

The scenario runs its own Kafka + FerretDB pair (so killing them disturbs nobody), the real
identity, loan and payroll services and the signals worker as subprocesses. Each customer logs
in at identity, applies, and accepts an approval; the employer's batch is approved before the
applications start. Faults come one after another: kill, restart (supervisord restarts an
engine by itself; a service is started again on its port, as a supervisor would), wait until
it has recovered (the time printed), a short pause, the next. Afterwards, from the databases,
the topics and the rail simulators: every application decided exactly once; every
disbursement and salary paid exactly once (rail references unique, sums equal); every ledger
posting balanced and every chain gap-free; every consumer group caught up.

Recovery of a kill: the broker: a record produced to it again and every service ready;
FerretDB: a write acknowledged again and every service ready; identity: a password login
succeeds; loan: an application read back; payroll: the batch read back; the signals worker:
its group has committed everything the loan topic held at the kill.

    .venv/bin/python -m tests.chaos.kill9 [--quick] [--applications 310] [--items 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from tests.chaos.support import (
    Customer,
    Findings,
    Load,
    PrivateEngines,
    Row,
    Suite,
    check_groups,
    check_loans,
    check_payroll,
    log,
    quiet_reconnect_logs,
    report,
    until,
)

ENGINES = ("kafka", "ferretdb")
FULL = [
    ["kafka"], ["ferretdb"], ["identity"], ["loan"], ["payroll"], ["signals"],
    ["loan", "kafka"], ["payroll", "ferretdb"], ["signals", "identity"],
]  # fmt: skip
QUICK = [["loan"], ["kafka"], ["payroll", "signals"]]
RECOVER_WITHIN_S = 240
PAUSE_S = 3.0


class Faults:
    """Kills and restarts, and knows when each victim has recovered."""

    def __init__(
        self, engines: PrivateEngines, suite: Suite, load: Load, probe: dict[str, Any]
    ) -> None:
        self.engines, self.suite, self.load, self.probe = engines, suite, load, probe
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            engines.urls.mongodb, serverSelectionTimeoutMS=2000
        )
        self.recovered: list[tuple[str, float]] = []

    async def inject(self, victims: list[str]) -> float:
        loan_ends = await self._loan_ends() if "signals" in victims else {}
        began = time.monotonic()
        for victim in victims:
            if victim in ENGINES:
                self.engines.kill9(victim)
            else:
                self.suite.services[victim].kill9()
        log(f"killed {' + '.join(victims)}")
        for victim in victims:
            if victim not in ENGINES:
                self.suite.services[victim].restart()
        ready: dict[str, float] = {}
        await asyncio.gather(*(self._recovered(v, loan_ends, began, ready) for v in victims))
        took = time.monotonic() - began
        name = " + ".join(victims)
        self.recovered.append((name, took))
        # A restarted service's /readyz apart from its probe: start-up against serving a backlog.
        started = "".join(f"; {v} ready after {t:.1f} s" for v, t in ready.items())
        log(f"{name}: recovered in {took:.1f} s{started}")
        return took

    async def _recovered(
        self,
        victim: str,
        loan_ends: dict[TopicPartition, int],
        began: float,
        ready: dict[str, float],
    ) -> None:
        probes = {
            "kafka": self._broker_takes_records,
            "ferretdb": self._database_takes_writes,
            "identity": self._login,
            "loan": self._read_application,
            "payroll": self._read_batch,
            "signals": lambda: self._signals_caught_up(loan_ends),
        }
        if victim in ENGINES:
            self.engines.ensure_running(victim)
        else:
            service = self.suite.services[victim]
            await until(service.ready, within_s=RECOVER_WITHIN_S, interval=0.25)
            ready[victim] = time.monotonic() - began
        await until(probes[victim], within_s=RECOVER_WITHIN_S, interval=0.25)
        if victim in ENGINES:
            for service in self.suite.services.values():
                await until(service.ready, within_s=RECOVER_WITHIN_S, interval=0.25)

    async def _broker_takes_records(self) -> bool:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.engines.urls.kafka, request_timeout_ms=3000, acks="all"
        )
        try:
            await asyncio.wait_for(producer.start(), 5)
            await asyncio.wait_for(
                producer.send_and_wait(self.suite.topic("notes"), b"probe", key=b"probe"), 5
            )
            return True
        except Exception:  # anything short of an acknowledged record is "not yet"
            return False
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _database_takes_writes(self) -> bool:
        try:
            await self.mongo[self.suite.db("probe")]["probe"].insert_one({"at": time.time()})
            return True
        except Exception:  # not yet
            return False

    async def _login(self) -> bool:
        if not await self.suite.services["identity"].ready():
            return False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.load.login(self.probe["customer"]), 5)
            return True
        return False

    async def _read_application(self) -> bool:
        if not await self.suite.services["loan"].ready():
            return False
        applied: dict[str, str] = self.probe["applied"]
        if not applied:
            return True
        party, application = next(iter(applied.items()))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.load.application(party, application), 5)
            return True
        return False

    async def _read_batch(self) -> bool:
        service = self.suite.services["payroll"]
        if not await service.ready():
            return False
        r = await self.load.client.get(
            f"{service.url}/v1/batches/{self.probe['batch']}",
            headers=self.load._rep(self.probe["rep"]),
        )
        return r.status_code == 200

    async def _loan_ends(self) -> dict[TopicPartition, int]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=self.engines.urls.kafka)
        await consumer.start()
        try:
            topic = self.suite.topic("loan")
            parts = [TopicPartition(topic, p) for p in range(6)]
            ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
            return ends
        finally:
            await consumer.stop()

    async def _signals_caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        if not await self.suite.services["signals"].ready():
            return False
        admin = AIOKafkaAdminClient(bootstrap_servers=self.engines.urls.kafka)
        try:
            await admin.start()
            committed = await admin.list_consumer_group_offsets(self.suite.group("signals"))
        except Exception:  # the broker may be the other victim
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return all(
            end == 0 or (tp in committed and committed[tp].offset >= end)
            for tp, end in ends.items()
        )


async def scenario(args: argparse.Namespace) -> int:
    quick = args.quick
    applications = args.applications or (40 if quick else 310)
    items = args.items or (2_000 if quick else 20_000)
    schedule = QUICK if quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="zc-chaos-kill9-"))
    engines = PrivateEngines()
    log(f"private engines: kafka {engines.urls.kafka}, mongodb {engines.urls.mongodb}")
    engines.start()
    suite = Suite(engines.urls, workdir)
    findings = Findings()
    load: Load | None = None
    kills = 0
    recover: float | None = None
    detail = ""
    try:
        await suite.start()
        load = Load(suite)
        log(f"suite up (logs in {workdir}); registering {applications} customers")
        gate = asyncio.Semaphore(8)

        async def one() -> Customer:
            async with gate:
                return await load.customer()

        customers = list(await asyncio.gather(*(one() for _ in range(applications + 1))))
        probe_customer = customers.pop()
        enterprise, rep = await load.employer()
        log(f"employer ready; submitting a {items}-item payroll batch")
        batch = await load.payroll_batch(enterprise, rep, items, seed=1)
        applied: dict[str, str] = {}
        probe = {"customer": probe_customer, "applied": applied, "batch": batch, "rep": rep}
        faults = Faults(engines, suite, load, probe)
        log(f"batch {batch} approved; {applications} applications at 10/s, then the faults")
        journeys = asyncio.create_task(load.applications(customers, 10.0, applied))
        await asyncio.sleep(PAUSE_S)
        for victims in schedule:
            await faults.inject(victims)
            kills += len(victims)
            await asyncio.sleep(PAUSE_S)
        errors = await journeys
        for error in errors[:5]:
            findings.failures.append(f"a journey failed: {error!r}")
        log("load done; checking")
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            engines.urls.mongodb, tz_aware=True
        )
        try:
            await check_payroll(suite, mongo, {batch: items}, findings, within_s=900)
            # Approved loans are paid after acceptance; give the last ones time to go out.
            await asyncio.sleep(5)
            await check_loans(suite, mongo, applied, [c.party_id for c in customers], findings)
            await check_groups(suite, findings, within_s=120)
        finally:
            await mongo.close()
        recover = round(max(t for _, t in faults.recovered), 1)
        server_errors = load.stats.server_errors()
        detail = (
            "recovered: "
            + ", ".join(f"{n} {t:.1f}s" for n, t in faults.recovered)
            + f"; {'; '.join(findings.notes)}; 5xx other than 503 seen by clients: {server_errors}"
        )
    finally:
        if load is not None:
            await load.close()
        suite.stop()
        engines.stop()
        if not findings.failures:  # otherwise its data stays for a look (printed below)
            shutil.rmtree(engines.home, ignore_errors=True)
    row = Row(
        "kill9", kills, findings.operations, findings.lost, findings.duplicated, recover, detail
    )
    if findings.failures:
        print(f"logs kept in {workdir}, the engines' data in {engines.home}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return report([row], findings.failures)


def main() -> int:
    quiet_reconnect_logs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="3 faults, 40 applications, 2,000 items"
    )
    parser.add_argument("--applications", type=int, default=0)
    parser.add_argument("--items", type=int, default=0)
    return asyncio.run(scenario(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
