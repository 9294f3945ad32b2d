"""Crash points for the reliability suite: the process kills itself at a named point, at random.

The outbox relay has two places where a crash is the interesting case: after the state change
and its events are stored but before anything is published (``after_state_write``), and after
the broker acknowledged the events but before the relay cleared them from the aggregate
(``after_publish``). ``tests/chaos/outbox_crash.py`` turns them on in a service it restarts
after every crash and checks that every committed change reaches the topic and every consumer
applies it once (docs/reliability.md).

Off unless three things are true, so it cannot be switched on by accident in production:

- ``ZC_FAULT_CRASH_POINTS`` names the points (comma-separated);
- ``ZC_FAULT_INJECTION=allow`` says this is a development or test process;
- the process is not in a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is unset): no manifest
  can enable it, whatever its environment holds.

``ZC_FAULT_CRASH_PROBABILITY`` (default 0.05) is the chance of a crash each time a point is
passed. A crash is ``SIGKILL`` to the process itself: no ``finally``, no flush, no goodbye to
the broker or the database, as with ``kill -9`` or the kernel's OOM killer.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

AFTER_STATE_WRITE = "after_state_write"
AFTER_PUBLISH = "after_publish"
CRASH_POINTS = (AFTER_STATE_WRITE, AFTER_PUBLISH)
ALLOW = "allow"
DEFAULT_PROBABILITY = 0.05


class FaultInjectionRefused(ValueError):
    """Crash points were asked for where they are not allowed; the message is one line."""


@dataclass(frozen=True)
class CrashPoints:
    """Which points crash the process, and how often."""

    points: frozenset[str] = frozenset()
    probability: float = 0.0

    def reached(self, point: str) -> None:
        """Kill this process now if ``point`` is armed and the dice say so."""
        if point in self.points and random.random() < self.probability:
            os.write(2, f"fault injection: crash at {point}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)


NONE = CrashPoints()


def crash_points_from(env: Mapping[str, str]) -> CrashPoints:
    """The crash points ``env`` arms; :class:`FaultInjectionRefused` when it may not arm any."""
    names = [p.strip() for p in env.get("ZC_FAULT_CRASH_POINTS", "").split(",") if p.strip()]
    if not names:
        return NONE
    unknown = sorted(set(names) - set(CRASH_POINTS))
    if unknown:
        raise FaultInjectionRefused(
            f"ZC_FAULT_CRASH_POINTS: unknown point(s) {', '.join(unknown)}"
            f" (known: {', '.join(CRASH_POINTS)})"
        )
    if env.get("ZC_FAULT_INJECTION") != ALLOW:
        raise FaultInjectionRefused(
            "ZC_FAULT_CRASH_POINTS is set but fault injection is not allowed here"
            f" (set ZC_FAULT_INJECTION={ALLOW} in a development or test process only)"
        )
    if env.get("KUBERNETES_SERVICE_HOST"):
        raise FaultInjectionRefused(
            "ZC_FAULT_CRASH_POINTS is refused in a Kubernetes pod (crash points are for local tests)"
        )
    raw = env.get("ZC_FAULT_CRASH_PROBABILITY", str(DEFAULT_PROBABILITY))
    try:
        probability = float(raw)
    except ValueError:
        probability = -1.0
    if not 0.0 < probability <= 1.0:
        raise FaultInjectionRefused(
            f"ZC_FAULT_CRASH_PROBABILITY must be a number in (0, 1], not {raw!r}"
        )
    return CrashPoints(frozenset(names), probability)


@cache
def crash_points() -> CrashPoints:
    """This process's crash points, from its environment (read once)."""
    return crash_points_from(os.environ)
