"""Each service installs on its own, slim; a consumer with only the contracts reads our events.

* For loan, payroll, marketing and gateway a fresh environment gets ONLY ``zerocontact-<svc>``
  from the frozen lock (``uv sync --frozen --no-dev --package``), non-editable: the member, the
  platform and the contracts are built as wheels and installed as an image would install them, so
  a module left out of a wheel (or generated code the contracts wheel fails to pack) shows here.
  Its app must import, and nothing another service needs (dlib, OpenCV, Faust, another service's
  code) may be installed.
* A partner's consumer has only ``zerocontact-contracts`` (the wheel ``uv build`` makes) and
  aiokafka, at the lock's versions. It reads from the real broker a loan event that the suite's
  own code produced (the loan service's event builder, the platform's publisher) and decodes it
  with ``zerocontact.loan.v1``.

Environments are made as tests/integration/contracts_only.py describes (uv's cache, a few
seconds each, ``python -I`` from their own folder).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.contracts_only import (  # noqa: F401  (fixture)
    ROOT,
    UV,
    contracts_only_python,
    run,
    uv_env,
)
from tests.integration.harness import Engines
from zerocontact.loan.domain.loans import Application
from zerocontact.loan.events import application_submitted
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.money import Money

SERVICES = ("identity", "loan", "payroll", "marketing", "signals", "gateway", "skeleton")
HEAVY = ("dlib", "cv2", "faust")  # identity's face matching, signals' stream processor

pytestmark = pytest.mark.timeout(600)


_PROBE = """
import importlib, importlib.util, json, sys
app = importlib.import_module(sys.argv[1])
print(json.dumps({
    "app_file": app.__file__,
    "installed": [n for n in sys.argv[2].split(",") if importlib.util.find_spec(n) is not None],
}))
"""


@pytest.mark.parametrize("service", ["loan", "payroll", "marketing", "gateway"])
def test_a_service_installs_alone_without_the_heavy_dependencies(
    service: str, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _, took = run(
        [
            UV,
            "sync",
            "--frozen",
            "--no-dev",
            "--no-editable",
            "--package",
            f"zerocontact-{service}",
            "--python",
            sys.executable,
            "--quiet",
            # uv reuses a wheel it built from a folder until that folder's pyproject.toml
            # changes: rebuild the suite's own three, so the wheels are of the code as it is.
            *("--reinstall-package", f"zerocontact-{service}"),
            *("--reinstall-package", "zerocontact-platform"),
            *("--reinstall-package", "zerocontact-contracts"),
        ],
        cwd=ROOT,
        env=uv_env(UV_PROJECT_ENVIRONMENT=str(venv)),
    )
    print(f"zerocontact-{service}: environment made in {took:.1f}s")

    others = [f"zerocontact.{s}.app" for s in SERVICES if s != service]
    out, _ = run(
        [
            venv / "bin" / "python",
            "-I",
            "-c",
            _PROBE,
            f"zerocontact.{service}.app",
            ",".join([*HEAVY, *others]),
        ],
        cwd=tmp_path,
        env=uv_env(),
    )
    probe = json.loads(out)
    assert Path(probe["app_file"]).is_relative_to(venv), probe  # the wheel's copy, not src/
    assert probe["installed"] == [], f"zerocontact-{service} brings {probe['installed']}"


_CONSUMER = """
import asyncio, importlib.util, json, sys
from aiokafka import AIOKafkaConsumer
from zerocontact.loan.v1 import events_pb2

async def main(bootstrap, topic):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    event = events_pb2.LoanEvent.FromString(record.value)
    submitted = event.loan_application_submitted
    print(json.dumps({
        "key": record.key.decode(),
        "headers": {k: v.decode() for k, v in record.headers},
        "which": event.WhichOneof("event"),
        "application_id": submitted.application_id,
        "party_id": submitted.party_id,
        "product_id": submitted.product_id,
        "currency": submitted.amount.currency_code,
        "minor_units": submitted.amount.minor_units,
        "term_months": submitted.term_months,
        "purpose": submitted.purpose,
        "submitted_at": submitted.submitted_at.ToJsonString(),
        "contracts_file": events_pb2.__file__,
        "suite_installed": [
            n for n in ("zerocontact.platform", "zerocontact.loan.events", "fastapi", "pymongo")
            if importlib.util.find_spec(n) is not None
        ],
    }))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_consumer_with_only_the_contracts_decodes_a_loan_event(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    contracts_only_python: Path,  # noqa: F811  (the fixture imported above)
) -> None:
    topic = await create_topic("loan-events-v1", partitions=1)
    submitted_at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    application = Application(
        id="app-dist-1",
        party_id="party-dist-1",
        product_id="merchant-310",
        amount=Money.of("5000.50", "CNY"),
        term_months=12,
        purpose="stock",
        device_id="device-1",
        source_address="10.0.0.1",
        submitted_at=submitted_at,
    )
    outgoing = application_submitted(application, topic=topic)
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="dist-test")
    await publisher.start(wait=True)
    try:
        await publisher.publish(outgoing.topic, outgoing.key, outgoing.event)
    finally:
        await publisher.stop()

    venv = contracts_only_python.parents[1]
    out, took = await asyncio.to_thread(
        run,
        [contracts_only_python, "-I", "-c", _CONSUMER, engines.kafka_bootstrap, topic],
        cwd=venv.parent,
        env=uv_env(),
    )
    print(f"the contracts-only consumer ran in {took:.1f}s")
    got = json.loads(out)
    assert Path(got["contracts_file"]).is_relative_to(venv)
    assert got["suite_installed"] == []
    assert got["which"] == "loan_application_submitted"
    assert got["headers"]["ce_type"] == outgoing.event.type
    assert outgoing.event.type.endswith(".LoanApplicationSubmitted")
    assert got["headers"]["ce_id"] == outgoing.event.id
    assert got["key"] == "party-dist-1"
    assert {k: got[k] for k in ("application_id", "party_id", "product_id", "purpose")} == {
        "application_id": "app-dist-1",
        "party_id": "party-dist-1",
        "product_id": "merchant-310",
        "purpose": "stock",
    }
    assert (got["currency"], got["minor_units"], got["term_months"]) == ("CNY", 500050, 12)
    assert got["submitted_at"] == "2026-03-01T09:30:00Z"
