"""PeriodicJob: the interval, and the idle back-off of a job that polls for work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from zerocontact.platform.jobs import PeriodicJob


class RecordedJob(PeriodicJob):
    """Records each wait it is asked for instead of sleeping; stops after ``runs`` runs."""

    def __init__(self, results: Iterator[object], runs: int, **options: float) -> None:
        self.waits: list[float] = []
        self._results = results
        self._runs = runs
        self.done = asyncio.Event()
        self.third_wait = asyncio.Event()
        self.resume = asyncio.Event()
        self.resume.set()  # the wake test clears it to hold the job at its third wait
        super().__init__("recorded", 1.0, self._next, **options)

    async def _next(self) -> object:
        return next(self._results)

    async def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) == 3:
            self.third_wait.set()
            await self.resume.wait()
        if len(self.waits) >= self._runs:
            self.done.set()
            await asyncio.Event().wait()  # park until stopped
        await asyncio.sleep(0)


async def _waits(results: list[object], **options: float) -> list[float]:
    job = RecordedJob(iter(results), len(results), **options)
    job.start()
    await asyncio.wait_for(job.done.wait(), 5)
    await job.stop()
    return job.waits


async def test_a_job_without_idle_interval_keeps_its_interval() -> None:
    assert await _waits([False, False, None, 3]) == [1.0, 1.0, 1.0, 1.0]


async def test_idle_runs_double_the_wait_up_to_the_idle_interval() -> None:
    waits = await _waits([False] * 6, idle_interval_s=5.0)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


async def test_a_run_with_work_brings_the_interval_back() -> None:
    # Anything but False is work: a count, None (a job that returns nothing), True.
    waits = await _waits([False, False, False, 2, False, None, False], idle_interval_s=8.0)
    assert waits == [1.0, 2.0, 4.0, 1.0, 1.0, 1.0, 1.0]


async def test_wake_brings_the_interval_back() -> None:
    job = RecordedJob(iter([False] * 10), 10, idle_interval_s=8.0)
    job.resume.clear()
    job.start()
    await asyncio.wait_for(job.third_wait.wait(), 5)
    job.wake()
    job.resume.set()
    await asyncio.wait_for(job.done.wait(), 5)
    await job.stop()
    assert job.waits[:5] == [1.0, 2.0, 4.0, 1.0, 2.0]  # back to the interval, then doubling
