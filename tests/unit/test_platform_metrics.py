"""The platform's metrics: the HTTP middleware's labels and statuses, engine readiness."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from prometheus_client import REGISTRY, generate_latest

from zerocontact.platform.http import install_operational_routes
from zerocontact.platform.metrics import HttpMetrics, run_checks


def _requests(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "zc_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def _observed(method: str, route: str) -> float:
    value = REGISTRY.get_sample_value(
        "zc_http_request_duration_seconds_count", {"method": method, "route": route}
    )
    return value or 0.0


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1/widgets")

    @router.get("/{widget_id}")
    async def widget(widget_id: str) -> dict[str, str]:
        if widget_id == "gone":
            raise HTTPException(409, "gone")
        if widget_id == "boom":
            raise RuntimeError("a bug")
        return {"id": widget_id}

    @router.post("")
    async def create() -> dict[str, str]:
        return {"id": "new"}

    app.include_router(router)

    async def ok() -> bool:
        return True

    install_operational_routes(app, checks={"kafka": ok})
    app.add_middleware(HttpMetrics)
    return app


async def _call(method: str, path: str) -> int:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request(method, path)
    return response.status_code


@pytest.mark.parametrize(
    ("method", "path", "route", "status"),
    [
        # the template, never the raw path (ids are personal data and unbounded label values)
        ("GET", "/v1/widgets/customer-4711", "/v1/widgets/{widget_id}", "200"),
        ("POST", "/v1/widgets", "/v1/widgets", "200"),
        ("GET", "/v1/widgets/gone", "/v1/widgets/{widget_id}", "409"),  # a refusal
        ("GET", "/v1/widgets/boom", "/v1/widgets/{widget_id}", "500"),  # an unhandled error
        ("GET", "/v1/nothing/here/4711", "unmatched", "404"),
        ("DELETE", "/v1/widgets", "/v1/widgets", "405"),  # the path matched, not the method
        ("PROPFIND", "/v1/widgets", "/v1/widgets", "405"),  # label value "other" below
    ],
)
async def test_requests_are_labelled_by_route_template_and_status(
    method: str, path: str, route: str, status: str
) -> None:
    label = method if method != "PROPFIND" else "other"
    before, seen = _requests(label, route, status), _observed(label, route)
    assert await _call(method, path) == int(status)
    assert _requests(label, route, status) == before + 1
    assert _observed(label, route) == seen + 1


async def test_no_raw_path_becomes_a_label() -> None:
    await _call("GET", "/v1/widgets/customer-4711")
    await _call("GET", "/v1/nothing/here/4711")
    exposition = generate_latest().decode()
    assert "customer-4711" not in exposition
    assert "/v1/nothing" not in exposition


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
async def test_operational_routes_are_not_counted(path: str) -> None:
    before = _requests("GET", path, "200")
    assert await _call("GET", path) == 200
    assert _requests("GET", path, "200") == before == 0


async def test_readiness_checks_set_engine_up() -> None:
    async def up() -> bool:
        return True

    async def raises() -> bool:
        raise ConnectionError("down")

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    results = await run_checks({"kafka": up, "mongodb": raises, "other": hangs}, 0.05)
    assert results == {"kafka": True, "mongodb": False, "other": False}
    assert REGISTRY.get_sample_value("zc_engine_up", {"engine": "kafka"}) == 1
    assert REGISTRY.get_sample_value("zc_engine_up", {"engine": "mongodb"}) == 0
    assert REGISTRY.get_sample_value("zc_engine_up", {"engine": "other"}) == 0
