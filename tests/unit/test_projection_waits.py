"""ProjectionWaits: a bounded wait that a consumer's change notification ends at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from zerocontact.platform.projection import ProjectionWaits


@pytest.mark.asyncio
async def test_a_change_wakes_the_waiter_before_its_next_poll() -> None:
    waits = ProjectionWaits(within_s=5.0, poll_s=5.0)  # polls far apart: only a wake-up helps
    view: dict[str, str] = {}
    reads = 0

    async def read() -> str | None:
        nonlocal reads
        reads += 1
        return view.get("p")

    async def consumer() -> None:
        await asyncio.sleep(0.1)
        view["p"] = "VERIFIED"
        waits.changed("p")

    clock = time.monotonic()
    task = asyncio.create_task(consumer())
    waited = await waits.until("p", read, lambda v: v == "VERIFIED")
    await task
    assert waited.ready and waited.value == "VERIFIED"
    assert time.monotonic() - clock < 1.0 and reads <= 3
    assert waits.waiting == 0


@pytest.mark.asyncio
async def test_the_wait_is_bounded_and_polls_a_few_times_only() -> None:
    waits = ProjectionWaits(within_s=0.6, poll_s=0.2)
    reads = 0

    async def read() -> None:
        nonlocal reads
        reads += 1

    clock = time.monotonic()
    waited = await waits.until("q", read, lambda v: v is not None)
    elapsed = time.monotonic() - clock
    assert not waited.ready and 0.6 <= elapsed < 0.9
    assert 3 <= reads <= 7  # 0.05, 0.1, 0.2, 0.2, ... never a busy loop
    assert waits.waiting == 0


@pytest.mark.asyncio
async def test_a_ready_view_costs_one_read() -> None:
    waits = ProjectionWaits()
    waited = await waits.until("r", lambda: asyncio.sleep(0, "x"), lambda v: v == "x")
    assert waited.ready and waited.waited_s < 0.05
