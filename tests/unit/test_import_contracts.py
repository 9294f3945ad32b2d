"""The import-linter contracts of pyproject.toml hold, and they catch what they are meant to.

``make lint`` runs ``lint-imports`` on the real graph; these tests also add imports that would
break the architecture to a copy of the graph, so a contract that matches nothing (a wildcard
that became too wide, a module renamed) cannot pass unnoticed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter import api
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.domain.contract import Contract

ROOT = Path(__file__).resolve().parents[2]
CONFIG = api.read_configuration(str(ROOT / "pyproject.toml"))
TYPES: dict[str, type[Contract]] = {
    "independence": IndependenceContract,
    "forbidden": ForbiddenContract,
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    options = CONFIG["session_options"]
    return grimp.build_graph(
        *options["root_packages"],
        include_external_packages=options["include_external_packages"] in (True, "true", "True"),
        exclude_type_checking_imports=options["exclude_type_checking_imports"]
        in (True, "true", "True"),
        cache_dir=None,
    )


def contract(contract_id: str) -> Contract:
    for options in CONFIG["contracts_options"]:
        if options.get("id") == contract_id:
            kind = TYPES[options["type"]]
            rest: dict[str, Any] = {k: v for k, v in options.items() if k not in ("id", "type")}
            return kind(options["name"], CONFIG["session_options"], rest)
    raise LookupError(contract_id)


def kept(contract_id: str, graph: grimp.ImportGraph, *extra: tuple[str, str]) -> bool:
    extended = copy.deepcopy(graph)
    for importer, imported in extra:
        extended.add_import(importer=importer, imported=imported, line_number=1, line_contents="")
    return contract(contract_id).check(extended, verbose=False).kept


def iter_contract_ids() -> Iterator[str]:
    for options in CONFIG["contracts_options"]:
        yield options["id"]


@pytest.mark.parametrize("contract_id", list(iter_contract_ids()))
def test_contract_is_kept(contract_id: str, graph: grimp.ImportGraph) -> None:
    assert kept(contract_id, graph)


def test_a_service_may_import_another_services_contracts(graph: grimp.ImportGraph) -> None:
    assert kept(
        "services-independent",
        graph,
        ("zerocontact.loan.handlers", "zerocontact.identity.v1.events_pb2"),
        ("zerocontact.gateway.servicers", "zerocontact.payroll.v1"),
    )


def test_a_service_may_not_import_another_services_code(graph: grimp.ImportGraph) -> None:
    assert not kept(
        "services-independent", graph, ("zerocontact.loan.handlers", "zerocontact.identity.tokens")
    )
    assert not kept(
        "services-independent", graph, ("zerocontact.signals.app", "zerocontact.payroll.domain")
    )


def test_the_platform_may_not_import_a_service(graph: grimp.ImportGraph) -> None:
    assert not kept(
        "platform-imports-no-service",
        graph,
        ("zerocontact.platform.http", "zerocontact.payroll.domain"),
    )
    assert kept(
        "platform-imports-no-service",
        graph,
        ("zerocontact.platform.kafka.cloudevents", "zerocontact.loan.v1.events_pb2"),
    )


@pytest.mark.parametrize(
    "library", ["pymongo", "fastapi", "grpc", "aiokafka", "faust", "opentelemetry"]
)
def test_a_domain_layer_may_not_reach_an_io_library(graph: grimp.ImportGraph, library: str) -> None:
    # Directly, and through a platform module that is pure today but would no longer be.
    assert not kept("domain-without-io", graph, ("zerocontact.loan.domain.loans", library))
    assert not kept(
        "domain-without-io",
        graph,
        ("zerocontact.identity.trust.domain", "zerocontact.platform.money"),
        ("zerocontact.platform.money", library),
    )


def test_a_domain_layer_may_not_reach_tracing_through_the_platform(
    graph: grimp.ImportGraph,
) -> None:
    # The platform's telemetry module is OpenTelemetry: a domain importing it breaks purity.
    assert not kept(
        "domain-without-io",
        graph,
        ("zerocontact.payroll.domain.batches", "zerocontact.platform.telemetry"),
    )
