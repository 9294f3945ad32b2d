"""Kafka round-trip latency and raw consume throughput with aiokafka on a real broker.

(a) Latency: an idempotent ``acks=all`` producer sends one message at a time; a consumer that
    is already subscribed receives it; the time from just before ``send`` to the moment the
    consumer task holds the record is one sample. Warm-up samples are dropped.
(b) Throughput: pre-produce ``--messages`` records of ``--size`` bytes in batches, then time a
    fresh consumer group reading all of them with ``getmany``.

Both topics are unique to the run and deleted at the end. Bootstrap servers come from
``KAFKA_BOOTSTRAP_SERVERS`` (default ``127.0.0.1:9092``), TLS and SASL from the services'
variables (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_CAFILE``), so the same
run measures the PLAINTEXT or the SASL_SSL listener (docs/engines.md, "Benchmarks"). The
user needs to create and delete topics (the local ``zc-admin`` can). The last stdout line is
JSON.

    .venv/bin/python bench/kafka_roundtrip.py [--samples 2000] [--warmup 200] [--messages 200000]
        [--compare-sasl 127.0.0.1:9094]

``--compare-sasl`` measures the environment's listener and then the embedded broker's SASL_SSL
listener at that address in the same run, as the local Kafka admin (its password from
``.cache/run/local-secrets.json``, the dev CA ``.cache/kafka-tls/ca.pem``; ``ZC_LOCAL_HOME``
moves ``.cache``), and prints the two side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr

from zerocontact.platform.kafka.connection import KafkaConnection
from zerocontact.platform.settings import ServiceSettings

# The local suite's cache layout and admin (deploy/local/localsuite, standard library only).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from localsuite.configs import ADMIN_SECRET
from localsuite.layout import KAFKA_ADMIN_USER, Layout

PAYLOAD_HEADER = struct.Struct(">qq")  # sequence number, send time (perf_counter_ns)


@dataclass(frozen=True)
class Options:
    """Command-line options."""

    connection: KafkaConnection
    samples: int
    warmup: int
    messages: int
    size: int
    deadline_s: float


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def wait_assigned(consumer: AIOKafkaConsumer, partitions: int) -> None:
    # getmany drives the group join; an empty topic returns nothing until assignment is done.
    while len(consumer.assignment()) < partitions:
        await consumer.getmany(timeout_ms=100)


async def roundtrip_latency(opts: Options, topic: str, partitions: int) -> dict[str, float]:
    """Produce one message at a time and time its arrival at a subscribed consumer."""
    producer = AIOKafkaProducer(
        **opts.connection.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=0
    )
    consumer = AIOKafkaConsumer(
        topic,
        **opts.connection.client_kwargs(),
        group_id=f"{topic}-latency",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await producer.start()
    await consumer.start()
    try:
        await wait_assigned(consumer, partitions)
        padding = b"x" * max(0, opts.size - PAYLOAD_HEADER.size)
        total = opts.warmup + opts.samples
        samples_ms: list[float] = []
        deliveries = []
        for seq in range(total):
            sent = time.perf_counter_ns()
            deliveries.append(await producer.send(topic, PAYLOAD_HEADER.pack(seq, sent) + padding))
            record = await asyncio.wait_for(consumer.getone(), timeout=10)
            received = time.perf_counter_ns()
            got_seq, got_sent = PAYLOAD_HEADER.unpack_from(record.value or b"")
            if got_seq != seq:
                raise RuntimeError(f"expected message {seq}, received {got_seq}")
            if seq >= opts.warmup:
                samples_ms.append((received - got_sent) / 1e6)
        await asyncio.gather(*deliveries)  # every send was acknowledged, not only consumed
    finally:
        await consumer.stop()
        await producer.stop()
    ordered = sorted(samples_ms)
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50), 3),
        "p90_ms": round(percentile(ordered, 0.90), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


async def preproduce(opts: Options, topic: str) -> float:
    """Write ``opts.messages`` records in large batches; returns records per second."""
    producer = AIOKafkaProducer(
        **opts.connection.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    value = b"v" * opts.size
    started = time.perf_counter()
    try:
        chunk = 5000
        for first in range(0, opts.messages, chunk):
            futures = [
                await producer.send(topic, value, key=str(n % 64).encode())
                for n in range(first, min(first + chunk, opts.messages))
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return opts.messages / (time.perf_counter() - started)


class _AssignedAt(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type information
    """Notes when the group join handed this consumer its partitions."""

    def __init__(self) -> None:
        self.at: float | None = None

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.at = self.at or time.perf_counter()


async def consume_throughput(opts: Options, topic: str) -> dict[str, float]:
    """A fresh consumer group reads every pre-produced record."""
    consumer = AIOKafkaConsumer(
        **opts.connection.client_kwargs(),
        group_id=f"{topic}-throughput",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    assigned = _AssignedAt()
    started = time.perf_counter()
    await consumer.start()
    consumer.subscribe([topic], listener=assigned)
    count = 0
    try:
        while count < opts.messages:
            if time.perf_counter() - started > opts.deadline_s:
                raise TimeoutError(f"read {count} of {opts.messages} records before the deadline")
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            count += sum(len(records) for records in batches.values())
        finished = time.perf_counter()
    finally:
        await consumer.stop()
    if count != opts.messages or assigned.at is None:
        raise RuntimeError(f"read {count} records, expected {opts.messages}")
    # From the moment the group assigned the partitions: fetching, decoding and handing out.
    return {
        "records": count,
        "events_per_s": round(count / (finished - assigned.at)),
        "events_per_s_incl_join": round(count / (finished - started)),
        "seconds": round(finished - assigned.at, 3),
        "join_seconds": round(assigned.at - started, 3),
    }


async def run(opts: Options) -> dict[str, object]:
    token = uuid.uuid4().hex[:10]
    latency_topic, bulk_topic = f"bench.roundtrip.{token}", f"bench.throughput.{token}"
    partitions = 3
    admin = AIOKafkaAdminClient(**opts.connection.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(latency_topic, partitions, 1), NewTopic(bulk_topic, partitions, 1)]
        )
        try:
            async with asyncio.timeout(opts.deadline_s):
                print(
                    f"(a) round trip: {opts.samples} samples after {opts.warmup} warm-up, "
                    f"{opts.size}-byte messages, topic {latency_topic}",
                    flush=True,
                )
                latency = await roundtrip_latency(opts, latency_topic, partitions)
                print(
                    "    p50 {p50_ms} ms  p90 {p90_ms} ms  p99 {p99_ms} ms  max {max_ms} ms  "
                    "(mean {mean_ms} ms)".format(**latency),
                    flush=True,
                )
                print(
                    f"(b) consume throughput: producing {opts.messages} x {opts.size} bytes "
                    f"to {bulk_topic}",
                    flush=True,
                )
                produce_rate = await preproduce(opts, bulk_topic)
                print(f"    produced at {produce_rate:,.0f} records/s", flush=True)
                throughput = await consume_throughput(opts, bulk_topic)
                print(
                    "    fresh group read {records:,} records in {seconds} s: "
                    "{events_per_s:,} events/s ({events_per_s_incl_join:,} events/s including "
                    "the {join_seconds} s group join)".format(**throughput),
                    flush=True,
                )
        finally:
            await admin.delete_topics([latency_topic, bulk_topic])
    finally:
        await admin.close()
    return {
        "bench": "kafka_roundtrip",
        "bootstrap": opts.connection.bootstrap_servers,
        "security_protocol": opts.connection.security_protocol,
        "message_bytes": opts.size,
        "latency": latency,
        "produce_records_per_s": round(produce_rate),
        "consume": throughput,
    }


def local_sasl_connection(bootstrap: str) -> KafkaConnection:
    """The embedded broker's SASL_SSL listener, as the local admin (made by `make up`)."""
    layout = Layout.from_env()
    secrets = json.loads((layout.run / "local-secrets.json").read_text())
    return KafkaConnection(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_username=KAFKA_ADMIN_USER,
        sasl_password=SecretStr(secrets[ADMIN_SECRET]),
        ssl_cafile=str(layout.kafka_tls / "ca.pem"),
    )


def side_by_side(results: list[dict[str, object]]) -> None:
    """One line per listener: round-trip percentiles and fresh-group throughput."""
    print("listener      round trip p50 / p99 (ms)   consume events/s   produce records/s")
    for r in results:
        latency, consume = r["latency"], r["consume"]
        assert isinstance(latency, dict) and isinstance(consume, dict)
        print(
            f"{r['security_protocol']:<13} {latency['p50_ms']:>8} / {latency['p99_ms']:<14} "
            f"{consume['events_per_s']:>16,} {r['produce_records_per_s']:>19,}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=200, help="message bytes (>= 16)")
    parser.add_argument("--deadline", type=float, default=300.0, help="whole run, seconds")
    parser.add_argument(
        "--compare-sasl",
        metavar="HOST:PORT",
        help="also measure the embedded broker's SASL_SSL listener there, in the same run",
    )
    args = parser.parse_args()
    opts = Options(
        connection=ServiceSettings().kafka_connection(),
        samples=args.samples,
        warmup=args.warmup,
        messages=args.messages,
        size=max(args.size, PAYLOAD_HEADER.size),
        deadline_s=args.deadline,
    )
    runs = [opts]
    if args.compare_sasl:
        runs.append(replace(opts, connection=local_sasl_connection(args.compare_sasl)))
    results: list[dict[str, object]] = []
    for one in runs:
        print(f"--- {one.connection.security_protocol} at {one.connection.bootstrap_servers}")
        try:
            results.append(asyncio.run(run(one)))
        except TimeoutError as exc:
            print(
                f"kafka_roundtrip: not finished within {one.deadline_s:.0f} s: {exc}",
                file=sys.stderr,
            )
            return 1
    if len(results) > 1:
        side_by_side(results)
    print(json.dumps(results[0] if len(results) == 1 else {"runs": results}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
