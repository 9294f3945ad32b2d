"""The platform's own Prometheus metrics: HTTP requests, engine readiness, dead letters.

Names, types and labels are the contract of docs/observability.md ("Metrics").

* :class:`HttpMetrics` is a pure ASGI middleware the runtime puts around every service app:
  ``zc_http_requests_total{method,route,status}`` and
  ``zc_http_request_duration_seconds{method,route}``. ``route`` is the template of the route
  that matched (``/v1/loans/{loan_id}``), never the raw path: a raw path carries ids (personal
  data, unbounded label values). A request no route matched is ``unmatched``; a method outside
  the standard ones is ``other``. The operational routes (``/metrics``, ``/healthz``,
  ``/readyz``) are not counted: probes and scrapes every few seconds would swamp the request
  rates of a quiet service, and their health is what ``up`` and ``zc_engine_up`` say.
* :func:`run_checks` runs readiness checks and records each as ``zc_engine_up{engine}``;
  ``/readyz`` and the runtime's ``engine-up`` job (every :data:`ENGINE_POLL_S`) both call it,
  so the gauge is current without any probe.
* ``zc_dead_letters_total{group,topic}`` counts records sent to ``<topic>.dlq``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DEAD_LETTERS",
    "ENGINE_POLL_S",
    "ENGINE_UP",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "OPERATIONAL_ROUTES",
    "UNMATCHED",
    "HttpMetrics",
    "engine_poll",
    "run_checks",
]

HTTP_REQUESTS = Counter(
    "zc_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "zc_http_request_duration_seconds",
    "HTTP request duration, from the request's arrival to the end of the response",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENGINE_UP = Gauge(
    "zc_engine_up", "1 when the engine answered the last readiness check, else 0", ["engine"]
)
DEAD_LETTERS = Counter(
    "zc_dead_letters_total", "Records sent to the dead-letter topic <topic>.dlq", ["group", "topic"]
)

UNMATCHED = "unmatched"
OPERATIONAL_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
ENGINE_POLL_S = 15.0
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetrics:
    """ASGI middleware: one count and one duration per HTTP request, by route template.

    The labelled children are looked up once per (method, route[, status]) and kept, so a
    request costs two dict look-ups, a counter increment and a histogram observation.
    """

    def __init__(self, app: AsgiApp) -> None:
        self.app = app
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is answered 500 above us

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router stored the matched route in this same scope dict.
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            if template not in OPERATIONAL_ROUTES:
                self._observe(scope["method"], template, status, time.perf_counter() - started)

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "other"
        count = self._counts.get((method, route, status))
        if count is None:
            count = self._counts[(method, route, status)] = HTTP_REQUESTS.labels(
                method, route, str(status)
            )
        count.inc()
        duration = self._durations.get((method, route))
        if duration is None:
            duration = self._durations[(method, route)] = HTTP_DURATION.labels(method, route)
        duration.observe(seconds)


async def run_checks(
    checks: Mapping[str, Callable[[], Awaitable[bool]]], timeout_s: float
) -> dict[str, bool]:
    """Run every check side by side (a raise or a hang is a failure); record ``zc_engine_up``."""
    names = list(checks)
    results = await asyncio.gather(*(_run_check(checks[n], timeout_s) for n in names))
    outcome = dict(zip(names, results, strict=True))
    for name, ok in outcome.items():
        ENGINE_UP.labels(name).set(1 if ok else 0)
    return outcome


def engine_poll(
    checks: Mapping[str, Callable[[], Awaitable[bool]]], timeout_s: float
) -> Callable[[], Awaitable[dict[str, bool]]]:
    """The work of the periodic ``engine-up`` job: the readiness checks, recorded."""

    async def poll() -> dict[str, bool]:
        return await run_checks(checks, timeout_s)

    return poll


async def _run_check(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout_s)
    except Exception:  # a check that raises or hangs means: not ready
        return False
