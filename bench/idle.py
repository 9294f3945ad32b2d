"""What the local suite costs at rest: each process's CPU over a fixed window, and the total.

Measures the ``make up`` suite of ``ZC_LOCAL_HOME`` (default ``.cache``): every program its
supervisord runs (engines, services, the lag exporter) and supervisord itself, each with its
child processes, by the CPU time ``/proc/<pid>/stat`` counts (user + system) over
``--window`` seconds (default 60), as % of one core. When no suite runs, it starts one
(``deploy/local/engines.py up``), waits ``--settle`` seconds, measures and stops it again.

``--after-load`` then loads the suite's engines the way hours of traffic and a test run do,
and measures again once it has settled: ``--load-topics`` topics of ``--load-partitions``
partitions (what the integration tests leave on a shared broker),
``--load-groups`` consumer groups that committed offsets on them, and ``--load-documents``
filler documents in every collection the services' outbox relays sweep (fields no service
query matches). Everything loaded is removed at the end unless ``--keep-load``.

The cost at rest must not grow with the data or with the topics and groups on the broker: the
two measurements side by side show whether it does. The last line is JSON.

    .venv/bin/python bench/idle.py [--window 60] [--settle 60] [--after-load]
        [--load-topics 1500] [--load-partitions 3] [--load-groups 100] [--load-documents 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "deploy" / "local" / "engines.py"
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from localsuite.layout import Layout  # noqa: E402
from localsuite.services import load_services  # noqa: E402
from localsuite.supervisor import Supervisor  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FILLER = "bench_idle_filler"


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (all threads)


def tree_ticks(pid: int, children: dict[int, list[int]]) -> int:
    """CPU ticks of ``pid`` and every descendant alive now."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += _cpu_ticks(current)
        stack.extend(children.get(current, ()))
    return total


@dataclass
class Suite:
    """The running suite's processes: name → pid (supervisord as ``supervisord``)."""

    supervisor: Supervisor

    def pids(self) -> dict[str, int]:
        own = self.supervisor.pid()
        if own is None:
            return {}
        pids = {"supervisord": own}
        for name, info in sorted(self.supervisor.processes().items()):
            if info.get("statename") == "RUNNING" and int(str(info.get("pid") or 0)) > 0:
                pids[name] = int(str(info["pid"]))
        return pids


def _ticks(name: str, pid: int, children: dict[int, list[int]]) -> int:
    # supervisord's children are the programs, each measured on its own: it counts alone.
    return _cpu_ticks(pid) if name == "supervisord" else tree_ticks(pid, children)


def measure(suite: Suite, window_s: float, label: str) -> dict[str, Any]:
    """Each process's % of one core over ``window_s`` (a process that restarted is flagged)."""
    pids = suite.pids()
    load_before = os.getloadavg()[0]
    children = _children()
    before = {name: _ticks(name, pid, children) for name, pid in pids.items()}
    began = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - began
    after_pids = suite.pids()
    children = _children()
    percent: dict[str, float] = {}
    restarted = []
    for name, pid in pids.items():
        if after_pids.get(name) != pid:
            restarted.append(name)
            continue
        seconds = (_ticks(name, pid, children) - before[name]) / CLOCK_TICKS
        percent[name] = round(100 * seconds / elapsed, 2)
    total = round(sum(percent.values()), 2)
    print(
        f"\n{label}: {len(percent)} processes over {elapsed:.0f} s "
        f"(load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})"
    )
    print(f"{'process':<22} {'% of a core':>12}")
    for name, value in sorted(percent.items(), key=lambda item: -item[1]):
        print(f"{name:<22} {value:>12.2f}")
    print(f"{'total':<22} {total:>12.2f}")
    if restarted:
        print(f"not measured (stopped or restarted in the window): {', '.join(restarted)}")
    return {
        "window_s": round(elapsed, 1),
        "total_percent_of_a_core": total,
        "processes": percent,
        "restarted": restarted,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


async def load_engines(layout: Layout, args: argparse.Namespace, run: str) -> None:
    """Topics, groups and documents like hours of traffic and a test run leave behind."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pymongo import AsyncMongoClient

    bootstrap = layout.kafka_bootstrap
    topics = [f"bench-idle-{run}-{n:05d}" for n in range(args.load_topics)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=120_000)
    await admin.start()
    try:
        for first in range(0, len(topics), 100):
            await admin.create_topics(
                [NewTopic(t, args.load_partitions, 1) for t in topics[first : first + 100]]
            )
    finally:
        await admin.close()
    for n in range(args.load_groups):
        topic = topics[n % len(topics)] if topics else None
        if topic is None:
            break
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"bench-idle-{run}-g{n:04d}",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.commit({TopicPartition(topic, 0): 0})
        finally:
            await consumer.stop()
    print(
        f"load: {len(topics)} topics x {args.load_partitions} partitions, "
        f"{args.load_groups} groups with commits",
        flush=True,
    )
    if args.load_documents:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(layout.mongodb_uri)
        try:
            swept = await swept_collections(client)
            for db, name in swept:
                await fill_collection(client[db][name], run, args.load_documents)
        finally:
            await client.close()
        print(
            f"load: {args.load_documents} documents in each of {len(swept)} collections "
            "the outbox relays sweep",
            flush=True,
        )


async def fill_collection(collection: Any, run: str, count: int) -> None:
    """``count`` filler documents: about an aggregate's size, fields no service query matches."""
    filler = "x" * 800
    docs = [
        {"_id": f"{FILLER}-{run}-{n:07d}", FILLER: filler, "_outbox_pending": False, "version": 1}
        for n in range(count)
    ]
    for first in range(0, len(docs), 1000):
        await collection.insert_many(docs[first : first + 1000])


async def swept_collections(client: Any, prefix: str = "zc_") -> list[tuple[str, str]]:
    """(database, collection) of every collection with the outbox relay's index, in the
    databases whose name starts with ``prefix`` (the services')."""
    found = []
    for db in await client.list_database_names():
        if not db.startswith(prefix):
            continue
        for name in await client[db].list_collection_names():
            if "outbox_pending" in await client[db][name].index_information():
                found.append((db, name))
    return found


async def unload_engines(layout: Layout, run: str) -> None:
    """Remove what :func:`load_engines` added (the groups' offsets go with their topics)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=layout.kafka_bootstrap, request_timeout_ms=120_000
    )
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(f"bench-idle-{run}-")]
        for first in range(0, len(ours), 100):
            await admin.delete_topics(ours[first : first + 100])
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(layout.mongodb_uri)
    try:
        for db, name in await swept_collections(client):
            await client[db][name].delete_many({FILLER: {"$exists": True}})
    finally:
        await client.close()


def engines(*args: str) -> None:
    done = subprocess.run([sys.executable, str(ENGINES), *args], cwd=ROOT, check=False)
    if done.returncode != 0:
        sys.exit(f"idle: engines.py {' '.join(args)} failed (exit {done.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="seconds waited after a start or a load before measuring",
    )
    parser.add_argument("--after-load", action="store_true", help="load, then measure again")
    parser.add_argument("--load-topics", type=int, default=1500)
    parser.add_argument("--load-partitions", type=int, default=3)
    parser.add_argument("--load-groups", type=int, default=100)
    parser.add_argument("--load-documents", type=int, default=20_000)
    parser.add_argument("--keep-load", action="store_true", help="leave the load in place")
    parser.add_argument("--start-timeout", type=float, default=400.0)
    args = parser.parse_args()

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries while topics appear
    layout = Layout.from_env()
    suite = Suite(Supervisor(layout))
    before = suite.pids()
    services = {service.name for service in load_services()}
    we_started = not services & before.keys()
    engines_were_up = "kafka" in before
    result: dict[str, Any] = {"zc_local_home": str(layout.home)}
    run = uuid.uuid4().hex[:8]
    loaded = False
    try:
        if we_started:
            print(
                f"idle: the suite does not run in {layout.home}: starting it (make up)", flush=True
            )
            engines("up", "--timeout", str(args.start_timeout))
            print(f"idle: settling {args.settle:.0f} s", flush=True)
            time.sleep(args.settle)
        result["fresh" if we_started else "running"] = measure(
            suite, args.window, "at rest" + (" (fresh)" if we_started else "")
        )
        if args.after_load:
            began = time.monotonic()
            loaded = True
            asyncio.run(load_engines(layout, args, run))
            print(
                f"idle: load took {time.monotonic() - began:.0f} s; settling {args.settle:.0f} s",
                flush=True,
            )
            time.sleep(args.settle)
            result["after_load"] = measure(suite, args.window, "at rest after the load")
            result["load"] = {
                "topics": args.load_topics,
                "partitions": args.load_partitions,
                "groups": args.load_groups,
                "documents_per_collection": args.load_documents,
            }
    finally:
        if loaded and not args.keep_load:
            asyncio.run(unload_engines(layout, run))
        if we_started:
            engines("stop", "--services-only") if engines_were_up else engines("down")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
