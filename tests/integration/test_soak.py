"""A short soak (tests/chaos/soak.py on the test engines): the real identity, loan and payroll
services and the signals worker under a steady trickle of customers and two payroll batches.
After the warm-up, no process's resident memory grows 10 % or more, no file descriptor other
than the MongoDB pool and the load's own connections is added, the pool stays within its size,
the load's connections are closed when it closes them, and nothing is lost or paid twice. Its
latency figures are printed in the row, not judged: a timed check on a shared machine measures
the machine (the 30-minute `tests.chaos.soak` judges them)."""

from __future__ import annotations

import shutil

import pytest

from tests.chaos.soak import soak
from tests.chaos.support import EngineUrls
from tests.integration.harness import Engines


@pytest.mark.timeout(1200)
async def test_a_short_soak_leaks_no_memory_or_descriptors_and_loses_nothing(
    engines: Engines,
) -> None:
    row, failures, workdir = await soak(
        EngineUrls(engines.kafka_bootstrap, engines.mongodb_uri),
        minutes=1.5,
        rate=1.0,
        batch_every_s=45,
        window_s=30,
        batch_items=200,
        judge_latency=False,
    )
    assert row is not None, f"the soak did not start: {failures} (logs in {workdir})"
    print(row.detail)
    assert failures == [], f"{failures} (logs in {workdir})"
    assert (row.lost, row.duplicated) == (0, 0)
    # 90 customers and 2 batches of 200: every application checked, every salary paid.
    assert row.operations >= 90 + 2 * 200
    shutil.rmtree(workdir, ignore_errors=True)
