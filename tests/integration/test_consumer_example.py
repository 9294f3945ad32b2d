"""examples/consumer_loan_events.py, as another team runs it, reads what the real 310 flow produced.

The loan service runs on topics of this test's own (the fixture of test_loan_310.py): a customer
applies, is assessed, approved, accepts and is paid out. The example then runs in a fresh venv
holding only the zerocontact-contracts wheel and aiokafka (tests/integration/contracts_only.py)
and must print each event once, in the party's order, with exact amounts; skip a redelivered
copy (same ``ce_id``) and an event newer than its contracts; and commit, so the same group run
again goes on where the last run stopped.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.integration.contracts_only import (  # noqa: F401  (fixture)
    ROOT,
    contracts_only_python,
    uv_env,
)
from tests.integration.harness import count_records
from tests.integration.test_loan_310 import (  # noqa: F401  (fixture)
    LoanEnv,
    accept,
    approved_application,
    env,
)
from zerocontact.platform.ids import new_id

EXAMPLE = ROOT / "examples" / "consumer_loan_events.py"

pytestmark = pytest.mark.timeout(300)


async def run_example(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The example in the contracts-only venv, isolated (``-I``) from the repository."""
    done = await asyncio.to_thread(
        subprocess.run,
        [str(python), "-I", str(EXAMPLE), *args],
        cwd=python.parents[2],
        env=uv_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def handled(run: subprocess.CompletedProcess[str]) -> int:
    """How many records a run handled, from its last log line."""
    found = re.search(r"(\d+) records handled", run.stderr)
    assert found, run.stderr
    return int(found[1])


async def redeliver(bootstrap: str, topic: str, event_id: str) -> None:
    """Produce again, byte for byte, the record whose ``ce_id`` is ``event_id`` (a redelivery)."""
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await reader.start()
    try:
        original = None
        while original is None:
            batches = await asyncio.wait_for(reader.getmany(timeout_ms=500), 30)
            for records in batches.values():
                for r in records:
                    if dict(r.headers).get("ce_id") == event_id.encode():
                        original = r
    finally:
        await reader.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            original.value,
            key=original.key,
            headers=list(original.headers),
            partition=original.partition,
        )
    finally:
        await producer.stop()


async def publish_unknown_event(bootstrap: str, topic: str, party: str) -> None:
    """A ``LoanEvent`` whose case (field 99) a future producer added: unknown to these contracts."""
    value = bytes([0x9A, 0x06, 0x02, 0x0A, 0x00])  # field 99, length 2: a message with field 1
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value,
            key=party.encode(),
            headers=[
                ("ce_id", new_id().encode()),
                ("ce_type", b"zerocontact.loan.v1.LoanRestructured"),
                ("ce_source", b"/tests/future-loan"),
                ("content-type", b"application/protobuf"),
            ],
        )
    finally:
        await producer.stop()


async def test_the_example_prints_the_310_flow_once_per_event(
    env: LoanEnv,  # noqa: F811  (the fixture imported above)
    contracts_only_python: Path,  # noqa: F811  (the fixture imported above)
) -> None:
    party = new_id()
    application = await approved_application(env, party)
    app_id = application["application_id"]
    r = await accept(env, app_id, party)
    assert r.status_code == 200, r.text
    loan_id = r.json()["loan_id"]
    (approved,) = await env.reader.wait_for("loan_approved", application_id=app_id)
    (disbursed,) = await env.reader.wait_for("loan_disbursed", loan_id=loan_id)
    await env.reader.wait_for("loan_offer_accepted", loan_id=loan_id)
    (submitted,) = env.reader.of("loan_application_submitted", application_id=app_id)

    bootstrap, topic = env.settings.kafka_bootstrap_servers, env.topics.loan
    await redeliver(bootstrap, topic, submitted.event_id)
    await env.reader.stop()  # the suite's own reader asserts every case is known: done with it
    await publish_unknown_event(bootstrap, topic, party)

    group = f"{topic}.risk-team.loan-watch"
    args = ("--bootstrap", bootstrap, "--topic", topic, "--group", group)
    first = await run_example(
        contracts_only_python, *args, "--from-beginning", "--idle-timeout", "3"
    )

    a = approved.message
    expected = {
        "loan_application_submitted": (
            f"submitted  application={app_id} party={party} product=merchant-310 "
            "amount=CNY 50000.00 term=12 purpose=inventory"
        ),
        "loan_approved": (
            f"approved   application={app_id} party={party} offered=CNY 50000.00 "
            f"rate={a.annual_rate} term=12 score=120 "
            f"reasons={','.join(x.code for x in a.reasons)}"
        ),
        "loan_offer_accepted": f"accepted   application={app_id} party={party} loan={loan_id}",
        "loan_disbursed": (
            f"disbursed  loan={loan_id} application={app_id} party={party} "
            "principal=CNY 50000.00 "
            "funders=partner-bank-a:CNY 35000.00,partner-bank-b:CNY 15000.00 "
            f"rail={disbursed.message.rail_reference}"
        ),
    }
    # The party's events in the order the loan service produced them (one key, one partition).
    order = [rec.kind for rec in env.reader.records if rec.key == party]
    assert sorted(order) == sorted(expected)
    assert first.stdout.splitlines() == [expected[kind] for kind in order], first.stderr
    assert a.annual_rate.startswith("0.") and a.reasons  # the line carried real values
    assert f"duplicate ce_id={submitted.event_id} skipped" in first.stderr
    assert "unknown event skipped: ce_type=zerocontact.loan.v1.LoanRestructured" in first.stderr

    # Offsets were committed after each effect: the same group resumes after all of them. The
    # outbox may still add a late copy of an event (at least once), which a new process, its
    # ids kept in memory, prints again; so counts are compared with the topic, lines with sets.
    again = await run_example(contracts_only_python, *args, "--idle-timeout", "2")
    total = await count_records(bootstrap, topic)
    assert handled(first) + handled(again) == total
    lines = first.stdout.splitlines()
    assert set(again.stdout.splitlines()) <= set(lines)

    # --max stops after N records and commits just those: the group's next run goes on from there.
    args = ("--bootstrap", bootstrap, "--topic", topic, "--group", f"{group}-max")
    two = await run_example(contracts_only_python, *args, "--from-beginning", "--max", "2")
    rest = await run_example(contracts_only_python, *args, "--idle-timeout", "2")
    assert handled(two) == 2
    assert handled(rest) == await count_records(bootstrap, topic) - 2
    assert two.stdout.splitlines() == lines[: len(two.stdout.splitlines())]
    assert set(two.stdout.splitlines() + rest.stdout.splitlines()) == set(lines)
