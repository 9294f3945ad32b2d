"""How well the assistant understands, on the labelled evaluation split it never trained on.

In-process (no engines): loads the understanding core as the service does (``Understander.load``:
knowledge base indexed, classifier trained on ``data/train.jsonl``), then over
``data/eval.jsonl`` prints intent accuracy, answer top-1 accuracy (the right intent and, for a
question, the right article), both by kind (paraphrase, typo, mixed) and language, the
red-line blocks and leaks of every composed reply (a leak is a reply shown that fails the
checker: must be 0), the time to load and to understand one message, and the containment of
the scripted conversations in ``data/conversations.jsonl`` as the understanding alone would
route them (as the service's dialogue does: a request for a person or a complaint goes to one,
so do two turns in a row not understood).

With ``--service`` (the default when ``KAFKA_BOOTSTRAP_SERVERS`` is set, as ``bench/run.py``
sets it) it then starts the real service as a uvicorn subprocess on a free port, on the engines
of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI`` with a database and topic of its own (removed
afterwards) and a key set served in-process, plays the scripted conversations ``--rounds``
times, ``--concurrency`` at a time (each with its customer's token), and prints the
containment (share of conversations closed without a hand-off) and the answer latency p50/p99
twice: paced, each customer pausing ``--think-s`` (1 s on average, drawn between 0.5 and 1.5 s,
and customers arriving one by one within the first second) between an answer and its next
message as a person reading and typing would (the goal's figure), then saturated, the same scripts
with no pause, so that 20 messages are always in flight (the service's capacity).
No identity, loan or payroll runs here: an action is answered "unavailable, nothing was done"
(the integration tests cover the actions). The last stdout line is JSON.

    .venv/bin/python bench/assistant_eval.py [--show-misses 20] [--confusions 20] [--no-service]
        [--service --rounds 2 --concurrency 20 --think-s 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from zerocontact.assistant.understanding import Understander, intents
from zerocontact.assistant.understanding.labelled import read_examples
from zerocontact.assistant.understanding.understander import DATA_DIR
from zerocontact.platform.compliance import check_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from localsuite.ports import port_owner

GOAL_TOP1 = 0.90
GOAL_CONTAINMENT = 0.75
GOAL_P99_MS = 200.0
# A customer's pause between reading an answer and sending the next message in the paced pass:
# short for a person (chat users take several seconds), so the load errs on the heavy side.
THINK_S = 1.0
ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def contained_offline(understander: Understander, turns: list[dict[str, str]]) -> tuple[bool, int]:
    """Would the conversation end without a hand-off, routing by understanding alone (a request
    for a person or a complaint goes to one at once, so do two turns not understood in a row)?
    Also the number of turns whose intent matched the script."""
    failed, matched = 0, 0
    for turn in turns:
        understood = understander.understand(turn["text"])
        matched += understood.intent == turn["intent"]
        if understood.intent in (intents.HANDOFF, intents.COMPLAINT):
            return False, matched
        failed = failed + 1 if understood.intent == intents.UNKNOWN else 0
        if failed >= 2:
            return False, matched
    return True, matched


# --- against the running service -------------------------------------------------------------

ISSUER = "https://identity.bench"
AUDIENCE = "zerocontact"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_assistant(
    port: int, jwks_port: int, database: str, topic: str, log: Path
) -> subprocess.Popen[bytes]:
    closed = free_port()  # nothing listens there

    def key() -> str:
        return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        "MONGODB_URI": os.environ["MONGODB_URI"],
        "ZC_ASSISTANT_MONGODB_DATABASE": database,
        "ZC_ASSISTANT_EVENTS_TOPIC": topic,
        "ZC_ASSISTANT_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        "ZC_ASSISTANT_JWT_ISSUER": ISSUER,
        "ZC_ASSISTANT_JWT_AUDIENCE": AUDIENCE,
        "ZC_ASSISTANT_OPERATOR_KEY": key(),
        "ZC_ASSISTANT_PII_KEY": key(),
        "ZC_ASSISTANT_PII_INDEX_KEY": key(),
        "ZC_ASSISTANT_LOG_LEVEL": "WARNING",
        # No identity, loan or payroll here: an action is answered "unavailable, nothing done".
        "ZC_ASSISTANT_IDENTITY_URL": f"http://127.0.0.1:{closed}",
        "ZC_ASSISTANT_LOAN_URL": f"http://127.0.0.1:{closed}",
        "ZC_ASSISTANT_PAYROLL_URL": f"http://127.0.0.1:{closed}",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "zerocontact.assistant.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (every thread) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def port_of(address: str) -> int:
    return int(address.rstrip("/").rsplit(":", 1)[1].split("/")[0])


def scrape(text: str, name: str, label: str) -> dict[str, float]:
    """``name``'s samples from a Prometheus text page, by the value of ``label`` (summed)."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            parts = dict(p.split("=", 1) for p in labels.split(",") if "=" in p)
            out[parts.get(label, "").strip('"')] += float(value)
    return out


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.exit(f"assistant exited ({proc.returncode}):\n{tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.5)
    sys.exit(f"assistant not ready after {timeout_s:.0f} s:\n{tail(log)}")


async def converse(
    client: httpx.AsyncClient,
    token: str,
    conversation: dict[str, Any],
    latencies_ms: list[float],
    think_s: float = 0.0,
    pauses: random.Random | None = None,
) -> bool:
    """Play one scripted conversation; True when it closed without a hand-off. ``think_s``
    is the customer's mean pause between reading an answer and sending the next message
    (drawn from ``pauses`` between half and one and a half of it: people do not type in step)."""
    headers = {"Authorization": f"Bearer {token}"}
    r = await client.post(
        "/v1/conversations",
        json={"channel": "app"},
        headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    r.raise_for_status()
    conversation_id = r.json()["conversation_id"]
    handed_off = False
    for n, turn in enumerate(conversation["turns"]):
        if n and think_s:
            await asyncio.sleep(think_s * (pauses.uniform(0.5, 1.5) if pauses else 1.0))
        t0 = time.perf_counter()
        r = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": turn["text"]},
            headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
        )
        latencies_ms.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        if r.json()["handoff"] is not None:
            handed_off = True
            break
    r = await client.post(
        f"/v1/conversations/{conversation_id}/closure",
        headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    return not handed_off


async def measure_service(
    conversations: list[dict[str, Any]], rounds: int, concurrency: int, think_s: float
) -> dict[str, Any]:
    """Containment and answer latency of the real service (uvicorn subprocess) on the engines of
    KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI, ``concurrency`` conversations at a time: paced
    (``think_s`` between a customer's messages) and then saturated (no pause)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pymongo import AsyncMongoClient

    from zerocontact.identity.domain.authentication import Aal, Method
    from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims

    token_id = uuid.uuid4().hex[:12]
    database, topic = f"bench_assistant_{token_id}", f"bench.assistant.{token_id}"
    keys = SigningKeys.from_config(
        pem=None, seed=base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    )
    now = datetime.now(UTC)
    parties = [str(uuid.uuid4()) for _ in range(concurrency)]
    tokens = [
        keys.sign(
            access_claims(
                AccessGrant(p, str(uuid.uuid4()), Aal.AAL2, (Method.PASSWORD, Method.TOTP), now),
                issuer=ISSUER,
                audience=AUDIENCE,
                now=now,
                ttl=timedelta(minutes=60),
            )
        )
        for p in parties
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    jwks_app = FastAPI()
    jwks_app.get("/.well-known/jwks.json")(lambda: keys.jwks())
    jwks_port, port = free_port(), free_port()
    jwks_server = uvicorn.Server(
        uvicorn.Config(jwks_app, host="127.0.0.1", port=jwks_port, log_level="warning")
    )
    jwks_task = asyncio.create_task(jwks_server.serve())
    workdir = Path(tempfile.mkdtemp(prefix="assistant-bench-"))
    proc = start_assistant(port, jwks_port, database, topic, workdir / "assistant.log")
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", proc, workdir / "assistant.log", 300)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            # One warm-up conversation, not counted (first requests pay imports and connections).
            await converse(client, tokens[0], conversations[0], [])
            pids = {
                "assistant": proc.pid,
                "ferretdb": port_owner(port_of(os.environ["MONGODB_URI"])),
                "kafka": port_owner(port_of(os.environ["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0])),
                "bench client": os.getpid(),
            }
            # Paced first (the goal's figures: people read an answer and type the next
            # message), then the same scripts back to back (the service's capacity).
            paced = await play(client, tokens, conversations, rounds, think_s, pids)
            saturated = await play(client, tokens, conversations, rounds, 0.0, pids)
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
        jwks_server.should_exit = True
        await jwks_task
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic, f"{topic}.dlq"])
        await admin.close()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(os.environ["MONGODB_URI"])
        await mongo.drop_database(database)
        await mongo.close()
    return {
        "service_think_s": think_s,
        **{f"service_{k}": v for k, v in paced.items()},
        **{f"service_saturated_{k}": v for k, v in saturated.items() if k in SATURATED_KEYS},
    }


SATURATED_KEYS = ("answer_p50_ms", "answer_p99_ms", "messages_per_s", "cpu_ms_per_message")


async def play(
    client: httpx.AsyncClient,
    tokens: list[str],
    conversations: list[dict[str, Any]],
    rounds: int,
    think_s: float,
    pids: dict[str, int | None],
) -> dict[str, Any]:
    """Every script ``rounds`` times, one conversation per token at a time, ``think_s`` between
    a customer's messages; containment, latency, CPU and database commands per message."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for _ in range(rounds):
        for conversation in conversations:
            queue.put_nowait(conversation)
    latencies_ms: list[float] = []
    outcomes: list[bool] = []
    cpu_before = {n: cpu_s(p) for n, p in pids.items() if p}
    metrics_before = (await client.get("/metrics")).text

    async def worker(n: int, token: str) -> None:
        pauses = random.Random(n)  # the same pauses run after run
        if think_s:  # customers arrive one by one, not all in the same instant
            await asyncio.sleep(pauses.uniform(0.0, think_s))
        while not queue.empty():
            conversation = queue.get_nowait()
            outcomes.append(
                await converse(client, token, conversation, latencies_ms, think_s, pauses)
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker(n, t) for n, t in enumerate(tokens)))
    elapsed = time.perf_counter() - started
    cpu_after = {n: cpu_s(p) for n, p in pids.items() if p}
    metrics_after = (await client.get("/metrics")).text
    messages = len(latencies_ms)
    cpu_ms = {n: round((cpu_after[n] - cpu_before[n]) * 1000 / messages, 1) for n in cpu_after}
    phases = {}
    before = scrape(metrics_before, "zc_assistant_turn_phase_seconds_sum", "phase")
    for phase, total in scrape(
        metrics_after, "zc_assistant_turn_phase_seconds_sum", "phase"
    ).items():
        phases[phase] = round((total - before.get(phase, 0.0)) * 1000 / messages, 1)
    commands_before = scrape(metrics_before, "zc_mongodb_commands_total", "command")
    commands = {
        k: round((v - commands_before.get(k, 0)) / messages, 2)
        for k, v in scrape(metrics_after, "zc_mongodb_commands_total", "command").items()
    }
    return {
        "cpu_ms_per_message": cpu_ms,
        "turn_phase_ms": phases,
        "mongodb_commands_per_message": commands,
        "load_average": round(os.getloadavg()[0], 1),
        "conversations": len(outcomes),
        "containment": round(sum(outcomes) / len(outcomes), 4),
        "messages": messages,
        "concurrency": len(tokens),
        "answer_p50_ms": round(statistics.median(latencies_ms), 1),
        "answer_p99_ms": round(percentile(latencies_ms, 0.99), 1),
        "messages_per_s": round(messages / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--show-misses", type=int, default=0, help="eval lines missed to print (none by default)"
    )
    parser.add_argument(
        "--confusions",
        type=int,
        default=0,
        help="most frequent (expected -> got) label pairs to print, counts only (no lines)",
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--service",
        action=argparse.BooleanOptionalAction,
        default=bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
        help="also measure the real service (default: when KAFKA_BOOTSTRAP_SERVERS is set)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="times each conversation is played")
    parser.add_argument("--concurrency", type=int, default=20, help="conversations at a time")
    parser.add_argument(
        "--think-s",
        type=float,
        default=THINK_S,
        help="a customer's pause between an answer and the next message (paced pass)",
    )
    args = parser.parse_args()
    if args.service and not (
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI")
    ):
        sys.exit("assistant_eval: --service needs KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI")

    started, cpu_started = time.perf_counter(), time.process_time()
    understander = Understander.load(train_path=args.data / "train.jsonl")
    load_s, load_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    examples = read_examples(args.data / "eval.jsonl")

    by: dict[str, Counter[str]] = defaultdict(Counter)
    latencies_ms: list[float] = []
    understand_cpu_s = 0.0
    blocked = leaks = 0
    misses: list[str] = []
    confusions: Counter[tuple[str, str]] = Counter()
    for example in examples:
        t0, cpu0 = time.perf_counter(), time.process_time()
        understood = understander.understand(example.text)
        latencies_ms.append((time.perf_counter() - t0) * 1000)
        understand_cpu_s += time.process_time() - cpu0
        reply = understander.compose(understood)
        blocked += reply.blocked
        disclosures = (
            understander.articles[reply.article_id].disclosures
            if reply.article_id and not reply.blocked
            else frozenset()
        )
        leaks += bool(check_text(reply.text, disclosures=disclosures))
        intent_ok = understood.intent == example.intent
        top1_ok = intent_ok and understood.article_id == example.article_id
        for group in ("all", f"kind:{example.kind}", f"lang:{example.lang}"):
            by[group]["n"] += 1
            by[group]["intent"] += intent_ok
            by[group]["top1"] += top1_ok
        if not top1_ok:
            got = understood.article_id or understood.intent
            confusions[(example.article_id or example.intent, got)] += 1
        if not top1_ok and len(misses) < args.show_misses:
            misses.append(
                f"  {example.text!r}: expected {example.article_id or example.intent}, "
                f"got {understood.article_id or understood.intent} ({understood.confidence:.2f})"
            )

    conversations = [
        json.loads(line)
        for line in (args.data / "conversations.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    contained = turns = turns_matched = 0
    for conversation in conversations:
        ok, matched = contained_offline(understander, conversation["turns"])
        contained += ok
        turns += len(conversation["turns"])
        turns_matched += matched

    total = by["all"]
    result = {
        "eval_questions": total["n"],
        "intent_accuracy": round(total["intent"] / total["n"], 4),
        "top1_accuracy": round(total["top1"] / total["n"], 4),
        "red_line_blocks": blocked,
        "red_line_leaks": leaks,
        "containment_offline": round(contained / len(conversations), 4),
        "conversations": len(conversations),
        "conversation_turn_accuracy": round(turns_matched / turns, 4),
        "load_s": round(load_s, 2),
        "load_cpu_s": round(load_cpu_s, 2),
        "understand_p50_ms": round(statistics.median(latencies_ms), 2),
        "understand_p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "understand_cpu_ms": round(understand_cpu_s * 1000 / len(examples), 2),
    }
    print(f"assistant eval: {total['n']} questions never trained on ({args.data / 'eval.jsonl'})")
    print(f"{'group':<16}{'n':>5}{'intent':>9}{'top-1':>9}")
    for group in sorted(by, key=lambda g: (g != "all", g)):
        c = by[group]
        print(f"{group:<16}{c['n']:>5}{c['intent'] / c['n']:>9.1%}{c['top1'] / c['n']:>9.1%}")
    if args.confusions:
        print("most frequent confusions (expected -> got: count):")
        for (expected, got), count in confusions.most_common(args.confusions):
            print(f"  {count:3d}  {expected} -> {got}")
    if misses:
        print("misses (first ones):")
        print("\n".join(misses))
    print(
        f"red lines: {blocked} replies blocked and replaced, {leaks} leaks (must be 0); "
        f"containment (understanding alone): {contained}/{len(conversations)} conversations "
        f"closed without a hand-off, {turns_matched}/{turns} turns understood as scripted"
    )
    print(
        f"load {load_s:.2f} s ({load_cpu_s:.2f} s CPU); understand p50 "
        f"{result['understand_p50_ms']} ms, p99 {result['understand_p99_ms']} ms "
        f"({result['understand_cpu_ms']} ms CPU on average); goals: "
        f"top-1 >= {GOAL_TOP1:.0%} ({'met' if result['top1_accuracy'] >= GOAL_TOP1 else 'MISSED'}), "
        f"leaks 0 ({'met' if leaks == 0 else 'MISSED'})"
    )
    if args.service:
        print(
            f"service: {args.concurrency} conversations at a time, each script played "
            f"{args.rounds} times, uvicorn subprocess on {os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
            flush=True,
        )
        service = asyncio.run(
            measure_service(conversations, args.rounds, args.concurrency, args.think_s)
        )
        result |= service
        p99 = service["service_answer_p99_ms"]
        print(
            f"service containment {service['service_containment']:.1%} of "
            f"{service['service_conversations']} conversations (goal {GOAL_CONTAINMENT:.0%}); "
            f"paced ({args.think_s:g} s between a customer's messages): answer p50 "
            f"{service['service_answer_p50_ms']} ms, p99 {p99} ms over "
            f"{service['service_messages']} messages (goal p99 <= {GOAL_P99_MS:.0f} ms: "
            f"{'met' if p99 <= GOAL_P99_MS else 'MISSED'}); "
            f"{service['service_messages_per_s']} messages/s"
        )
        print(
            f"saturated (no pause, {args.concurrency} messages always in flight): answer p50 "
            f"{service['service_saturated_answer_p50_ms']} ms, p99 "
            f"{service['service_saturated_answer_p99_ms']} ms; "
            f"{service['service_saturated_messages_per_s']} messages/s; CPU ms per message: "
            + ", ".join(
                f"{k} {v}" for k, v in service["service_saturated_cpu_ms_per_message"].items()
            )
        )
        print(
            "where a message's time goes (mean wall ms in the service by phase): "
            + ", ".join(f"{k} {v}" for k, v in service["service_turn_phase_ms"].items())
        )
        print(
            "CPU ms per message (opening and closing conversations included) by process: "
            + ", ".join(f"{k} {v}" for k, v in service["service_cpu_ms_per_message"].items())
            + "; MongoDB commands per message (all requests and the outbox relay): "
            + ", ".join(
                f"{k} {v}" for k, v in service["service_mongodb_commands_per_message"].items()
            )
            + f"; load average {service['service_load_average']}"
        )
    print(json.dumps(result))
    return 0 if leaks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
