"""Faust web pages of the signals worker (port 6066): health, metrics and one party's
feature values.

``GET /healthz`` answers 200 while the worker's web server runs, with whether it is still
recovering its tables (liveness). ``GET /readyz`` answers 503 until the app has started and
its tables are recovered (again 503 while a rebalance recovers them), 200 after (readiness:
a worker still rebuilding its tables would answer the support page from partial state).
``GET /metrics`` is the Prometheus exposition (:mod:`.metrics` and the process's own).
``GET /signals/v1/parties/{party_id}/features``
shows the party's current feature values, for support and for tests; a request reaching a
worker that does not hold the party's partition is routed to the one that does.
"""

from __future__ import annotations

import re
from typing import Any, Final

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.tables import FeatureTables

__all__ = ["PARTY_ID", "install_pages"]

PARTY_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PROBLEM_JSON: Final = "application/problem+json"


def install_pages(app: faust.App, tables: FeatureTables, settings: SignalsSettings) -> None:
    """Register the pages on ``app``."""

    @app.page("/healthz")
    class Health(View):
        """Liveness, and whether the tables are still being recovered."""

        async def get(self, request: Request) -> Response:
            recovering = not app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
            return self.json({"status": "ok", "app_id": settings.app_id, "recovering": recovering})

    @app.page("/readyz")
    class Ready(View):
        """Readiness: the app runs and its tables are recovered."""

        async def get(self, request: Request) -> Response:
            state = _readiness(app)
            ready = state == "ready"
            page: Response = self.json(
                {"status": state, "app_id": settings.app_id}, status=200 if ready else 503
            )
            return page

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus metrics: the agents' (zc_signals_*), dead letters and the process's."""

        async def get(self, request: Request) -> Response:
            # The content type as a header: aiohttp refuses a charset in ``content_type``.
            page: Response = self.bytes(
                generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )
            return page

    @app.page("/signals/v1/parties/{party_id}/features")
    class PartyFeaturesPage(View):
        """The party's feature values now."""

        async def get(self, request: Request, party_id: str) -> Response:
            if not PARTY_ID.match(party_id):
                # The value is not echoed: a mistyped national id must not come back.
                return self.json(
                    {
                        "type": "urn:zerocontact:problem:invalid_request",
                        "title": "invalid_request",
                        "status": 422,
                        "detail": "the request has invalid fields",
                        "errors": [
                            {
                                "field": "path.party_id",
                                "message": "1 to 128 letters, digits or . _ : -",
                                "type": "string_pattern_mismatch",
                            }
                        ],
                    },
                    status=422,
                    content_type=PROBLEM_JSON,
                )
            return await _routed(self, request, party_id)

    async def _routed(view: Any, request: Request, party_id: str) -> Response:
        try:
            routed: Response = await app.router.route_req(
                tables.party_table.name, party_id, view.web, request
            )
            return routed
        except faust.exceptions.SameNode:
            features = tables.party_features(party_id, cached=False)
            page: Response = view.json(
                {
                    "party_id": party_id,
                    "features": [
                        {"name": name, "value": str(value), "window": window}
                        for name, value, window in features.listed()
                    ],
                }
            )
            return page


def _readiness(app: Any) -> str:
    """ "ready", or why not: "starting", "stopping" or "recovering"."""
    if not app.started:
        return "starting"
    if app.should_stop:
        return "stopping"
    if not app.tables.recovery.completed.is_set() or app.in_recovery:
        return "recovering"
    return "ready"
