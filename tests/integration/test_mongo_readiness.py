"""The MongoDB readiness check leaves no socket behind when its caller stops waiting."""

from __future__ import annotations

import asyncio
import gc
import warnings

from tests.integration.harness import Engines
from zerocontact.platform.metrics import run_checks
from zerocontact.platform.mongo import create_mongo_client, mongo_ready


async def test_a_readiness_probe_that_times_out_mid_handshake_leaves_no_socket(
    engines: Engines,
) -> None:
    """A loaded loop made the probe's own deadline fire before PyMongo's: the cancelled ping
    left its half-made connection to the garbage collector (a ResourceWarning that failed an
    unrelated test in CI). Every round is a fresh client whose caller gives up sooner than a
    connection and a ping take; the deadlines sweep 0.1 to 50 ms so that some fire between
    the connection and the answer on a fast machine and a slow one (on this one the socket was
    left behind at 1.6 to 2 ms, two rounds in sixty, before the ping was shielded)."""
    deadlines = [0.0001 * 500 ** (n / 59) for n in range(60)]
    outcomes: list[bool] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for deadline in deadlines:
            client = create_mongo_client(engines.mongodb_uri, app_name="readiness-test")

            async def mongodb(client: object = client) -> bool:
                return await mongo_ready(client, 2.0)  # type: ignore[arg-type]

            outcomes.append((await run_checks({"mongodb": mongodb}, deadline))["mongodb"])
            await asyncio.sleep(0.2)  # the abandoned ping answers or meets PyMongo's deadline
            await client.close()
            gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, leaked
    assert not outcomes[0]  # a caller that gave up is told "not ready"
    client = create_mongo_client(engines.mongodb_uri, app_name="readiness-test")
    try:
        assert await mongo_ready(client, 2.0)  # and a patient caller hears the answer
    finally:
        await client.close()
