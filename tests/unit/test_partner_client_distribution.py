"""zerocontact-partner-client (clients/python) is its own distribution: it needs only the
contracts, grpcio and protobuf, never a service or the platform."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

from tests.unit.test_import_contracts import graph, kept  # noqa: F401  (the graph fixture)

ROOT = Path(__file__).resolve().parents[2]


def test_the_distribution_depends_on_no_service() -> None:
    project = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert names == {"zerocontact-contracts", "grpcio", "grpcio-status", "protobuf"}
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "clients/python" in root["tool"]["uv"]["workspace"]["members"]


@pytest.mark.parametrize(
    "imported", ["zerocontact.gateway.servicers", "zerocontact.platform.http", "zerocontact.loan"]
)
def test_the_client_may_not_import_a_service_or_the_platform(
    graph: grimp.ImportGraph,  # noqa: F811
    imported: str,
) -> None:
    contract = "partner-client-imports-no-service"
    assert not kept(contract, graph, ("zerocontact.partner_client", imported))


def test_the_client_may_import_the_contracts(graph: grimp.ImportGraph) -> None:  # noqa: F811
    assert kept(
        "partner-client-imports-no-service",
        graph,
        ("zerocontact.partner_client", "zerocontact.gateway.v1.loan_pb2"),
    )
