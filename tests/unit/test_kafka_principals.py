"""Each service's Kafka access (deploy/tools/kafka_users.py) against the catalog and CONSUMERS."""

from __future__ import annotations

import pytest

from deploy.tools.asyncapi import CONSUMERS
from deploy.tools.kafka_users import DEPLOYMENTS, FAUST_APPS, main, service_access
from zerocontact.platform.topics import TopicCatalog, load_catalog
from zerocontact.signals.settings import SignalsSettings


@pytest.fixture(scope="module")
def catalog() -> TopicCatalog:
    return load_catalog()


def test_every_produced_topic_has_exactly_its_owner_as_writer(catalog: TopicCatalog) -> None:
    access = service_access(catalog)
    for spec in catalog:
        writers = {a.service for a in access.values() if spec.name in a.write}
        if spec.is_dead_letter:
            # the services that consume its source dead-letter into it
            source = spec.name.removesuffix(".dlq")
            expected = {c.service for c in CONSUMERS if c.topic == source}
        else:
            expected = {"skeleton" if spec.owner == "platform" else spec.owner}
        assert writers == expected, spec.name


def test_reads_and_groups_are_the_consumer_table(catalog: TopicCatalog) -> None:
    access = service_access(catalog)
    for service, a in access.items():
        rows = [c for c in CONSUMERS if c.service == service]
        assert set(a.read) == {c.topic for c in rows}, service
        assert set(a.groups) == {c.group for c in rows if c.group}, service
    assert {c.service for c in CONSUMERS} <= access.keys()
    # watch streams: no group; the webhook dispatcher's group; both dead-letter what they
    # cannot read
    assert access["gateway"].groups == ("zerocontact-gateway-webhooks",)
    assert access["gateway"].write == (
        "gateway.audit.v1", "loan.events.v1.dlq", "payroll.events.v1.dlq", "signals.risk.v1.dlq",
    )  # fmt: skip


def test_only_topics_of_the_catalog_are_named(catalog: TopicCatalog) -> None:
    names = {spec.name for spec in catalog}
    for a in service_access(catalog).values():
        assert set(a.read) | set(a.write) <= names, a.service


def test_every_service_has_a_principal_and_deployments(catalog: TopicCatalog) -> None:
    access = service_access(catalog)
    assert access.keys() == DEPLOYMENTS.keys()
    assert len({a.user for a in access.values()}) == len(access)


def test_the_faust_prefix_is_the_signals_app_id(catalog: TopicCatalog) -> None:
    assert FAUST_APPS["signals"] == SignalsSettings().app_id
    assert service_access(catalog)["signals"].internal_prefix == f"{SignalsSettings().app_id}-"
    for service, a in service_access(catalog).items():
        if service not in FAUST_APPS:
            assert a.internal_prefix is None


def test_team_access_is_the_same_acls_for_the_local_broker(catalog: TopicCatalog) -> None:
    loan = service_access(catalog)["loan"].team_access()
    assert loan.team == "kafka-loan" and loan.groups == "loan"
    assert set(loan.write) == {"loan.events.v1", "identity.events.v1.dlq", "signals.risk.v1.dlq"}


def test_generated_kafka_users_and_prod_patches_are_current() -> None:
    assert main(["--check"]) == 0, "run `.venv/bin/python deploy/tools/kafka_users.py`"
