"""deploy/k8s and docker-compose.yml say what the design says: every catalog topic has a
KafkaTopic, every service has a workload, every workload is hardened, consumers never outscale
their partitions. Reads the rendered overlays (kustomize) and the compose file; no cluster."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from deploy.tools.kafka_users import service_access
from tests.unit.deploy_tooling import OVERLAYS, ROOT, of_kind, rendered
from zerocontact.platform.topics import TopicCatalog, load_catalog

# An ASGI factory (`zerocontact.loan.app:create_app`) or a package run with `python -m` (the Faust
# worker: `python -m zerocontact.signals worker`).
APP_MODULE = re.compile(r"^zerocontact\.(?P<package>[a-z_]+)(\.app:|$)")
COMPOSE = ROOT / "docker-compose.yml"
# One image per service, built by the Dockerfile with SERVICE=<service>: zerocontact-<service>,
# with a registry prefix and a tag once an overlay or compose has set them.
IMAGE = re.compile(r"^(?:[^/]+/)*zerocontact-(?P<service>[a-z]+)(?::[^/]+)?$")


@pytest.fixture(scope="module")
def catalog() -> TopicCatalog:
    return load_catalog()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def service_folders() -> list[str]:
    """Deployable workspace members: services/<name>/pyproject.toml (distribution zerocontact-<name>)."""
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


def image_service(image: str) -> str:
    """The service whose image this is (``registry.example.com/zerocontact-loan:dev`` -> loan)."""
    match = IMAGE.match(image)
    assert match, f"{image}: not an image of this suite (zerocontact-<service>)"
    return match["service"]


def service_packages() -> list[str]:
    """Service packages that run as an app (services/<name>/src/zerocontact/<name>/app.py)."""
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/src/zerocontact/*/app.py"))


def app_packages(command: list[str]) -> set[str]:
    """The zerocontact packages whose app a container command starts."""
    return {m["package"] for arg in command if (m := APP_MODULE.match(arg))}


def is_faust_worker(command: list[str]) -> bool:
    """``python -m zerocontact.<pkg> worker``: a Faust worker (starts on /healthz, ready on /readyz)."""
    return "worker" in command and bool(app_packages(command))


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_workloads_and_engines(overlay: str) -> None:
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "NetworkPolicy", "Kafka", "KafkaNodePool", "KafkaTopic",
            "MongoDBCommunity", "Namespace"} <= kinds  # fmt: skip
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {of_kind(objects, "Namespace")[0]["metadata"]["name"]}


def test_kafka_topics_file_is_generated_from_the_current_catalog(catalog: TopicCatalog) -> None:
    from deploy.tools.kafka_topics import OUTPUT, render

    assert OUTPUT.read_text() == render(catalog), (
        "kafka-topics.yaml is stale: run `.venv/bin/python deploy/tools/kafka_topics.py`"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_catalog_topic_has_a_kafka_topic(overlay: str, catalog: TopicCatalog) -> None:
    objects = rendered(overlay)
    topics = {t["spec"]["topicName"]: t for t in of_kind(objects, "KafkaTopic")}
    assert sorted(topics) == sorted(catalog.names)
    clusters = set(by_name(objects, "Kafka"))
    for spec in catalog:
        resource = topics[spec.name]
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] in clusters
        assert resource["spec"]["partitions"] == spec.partitions
        config = resource["spec"]["config"]
        assert config["cleanup.policy"] == spec.cleanup_policy
        assert config["retention.ms"] == spec.retention_ms


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_package_has_a_workload_and_a_compose_service(
    overlay: str, compose: dict[str, Any]
) -> None:
    deployed: set[str] = set()
    for deployment in of_kind(rendered(overlay), "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            deployed |= app_packages(container["command"])
    composed: set[str] = set()
    for service in compose["services"].values():
        composed |= app_packages(service.get("command", []))
    for package in service_packages():
        assert package in deployed, (
            f"zerocontact.{package}.app has no Deployment in deploy/k8s/base: add a workload "
            "folder (docs/deployment.md, 'Adding a service')"
        )
        assert package in composed, f"zerocontact.{package}.app has no docker-compose.yml service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_never_scale_past_their_input_partitions(
    overlay: str, catalog: TopicCatalog
) -> None:
    objects = rendered(overlay)
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    consumers = 0
    for deployment in of_kind(objects, "Deployment"):
        annotations = deployment["metadata"].get("annotations", {})
        if "zerocontact.io/input-topics" not in annotations:
            continue
        consumers += 1
        topics = [t.strip() for t in annotations["zerocontact.io/input-topics"].split(",")]
        partitions = min(catalog.get(topic).partitions for topic in topics)
        name = deployment["metadata"]["name"]
        # A member beyond the partition count gets no partition: idle, but rebalances the group.
        assert hpas[name]["spec"]["maxReplicas"] <= partitions, name
        assert deployment["spec"].get("replicas", 1) <= partitions, name
    assert consumers >= 1  # the skeleton's projection, at least


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_hardened_probed_and_budgeted(overlay: str) -> None:
    objects = rendered(overlay)
    services = by_name(objects, "Service")
    accounts = by_name(objects, "ServiceAccount")
    configmaps = set(by_name(objects, "ConfigMap"))
    pdbs = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(objects, "PodDisruptionBudget")
    }
    hpas = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
        assert name in services and name in accounts and name in pdbs and name in hpas, name
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["topologySpreadConstraints"]
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            # A Faust worker starts on /healthz (table recovery may be long and must not get
            # the pod restarted); every workload is ready on /readyz.
            start = "/healthz" if is_faust_worker(container["command"]) else "/readyz"
            assert container["startupProbe"]["httpGet"]["path"] == start, name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            for source in container["envFrom"]:
                assert source["configMapRef"]["name"] in configmaps
            assert IMAGE.match(container["image"]), (name, container["image"])
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs an emptyDir /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_committed_with_values(overlay: str, compose: dict[str, Any]) -> None:
    assert of_kind(rendered(overlay), "Secret") == []
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("_KEY"):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"
    example = (ROOT / ".env.example").read_text()
    assert re.findall(r"^[A-Z_]+=.+$", example, re.MULTILINE) == [], ".env.example holds values"


def test_strimzi_resources_carry_the_fields_their_crds_require() -> None:
    # No Strimzi schema is available offline; these are the CRDs' required fields (Strimzi 0.48).
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        (kafka,) = of_kind(objects, "Kafka")
        listeners = kafka["spec"]["kafka"]["listeners"]
        assert listeners
        for listener in listeners:
            assert re.fullmatch(r"[a-z0-9]{1,11}", listener["name"])
            assert isinstance(listener["port"], int) and listener["port"] >= 9092
            assert listener["type"] in {"internal", "route", "loadbalancer", "nodeport", "ingress",
                                        "cluster-ip"}  # fmt: skip
            assert isinstance(listener["tls"], bool)
        for pool in of_kind(objects, "KafkaNodePool"):
            assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
            assert pool["spec"]["replicas"] >= 1
            assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
            assert pool["spec"]["storage"]["type"] in {"jbod", "persistent-claim", "ephemeral"}
        for topic in of_kind(objects, "KafkaTopic"):
            assert topic["spec"]["partitions"] >= 1 and topic["spec"]["replicas"] >= 1
            replicas = sum(p["spec"]["replicas"] for p in of_kind(objects, "KafkaNodePool"))
            assert topic["spec"]["replicas"] <= replicas
            assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"]


def test_kafka_enforces_acls_and_anonymous_listeners_admit_only_the_suite() -> None:
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        (kafka,) = of_kind(objects, "Kafka")
        spec = kafka["spec"]["kafka"]
        # prod: every service is its own KafkaUser on the scram listener, nothing is ANONYMOUS;
        # dev still connects the services to the plain listener as ANONYMOUS, a super user.
        expected = {"type": "simple"} if overlay == "prod" else {
            "type": "simple", "superUsers": ["ANONYMOUS"]
        }  # fmt: skip
        assert spec["authorization"] == expected, overlay
        suite = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "zerocontact"}}}]
        for listener in spec["listeners"]:
            if "authentication" not in listener:  # its clients are ANONYMOUS: super users
                assert listener["networkPolicyPeers"] == suite, (overlay, listener["name"])
        scram = [listener for listener in spec["listeners"] if "authentication" in listener]
        assert [(lis["authentication"]["type"], lis["tls"]) for lis in scram] == [
            ("scram-sha-512", True)
        ]


def test_kafka_users_are_least_privilege() -> None:
    """Teams and services alike: their own topics, their own groups, nothing cluster-wide."""
    services = service_access()
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        (kafka,) = of_kind(objects, "Kafka")
        topics = {t["spec"]["topicName"] for t in of_kind(objects, "KafkaTopic")}
        users = of_kind(objects, "KafkaUser")
        service_users = {u["metadata"]["name"] for u in users if "zerocontact.io/service" in
                         u["metadata"]["labels"]}  # fmt: skip
        assert service_users == {a.user for a in services.values()}, overlay
        assert len(users) > len(service_users), overlay  # the example team too
        for user in users:
            name = user["metadata"]["name"]
            assert user["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
            assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
            assert user["spec"]["authorization"]["type"] == "simple"
            service = user["metadata"]["labels"].get("zerocontact.io/service")
            access = services[service] if service else None
            if user["metadata"]["labels"].get("zerocontact.io/role") == "monitoring":
                # the lag exporter: DESCRIBE, on catalog topics and the services' own groups
                groups = {g for a in services.values() for g in a.groups}
                for acl in user["spec"]["authorization"]["acls"]:
                    resource = acl["resource"]
                    assert acl["operations"] == ["Describe"], (name, acl)
                    assert resource["patternType"] == "literal", (name, acl)
                    known = topics if resource["type"] == "topic" else groups
                    assert resource["name"] in known, (name, acl)
                continue
            for acl in user["spec"]["authorization"]["acls"]:
                resource, operations = acl["resource"], set(acl["operations"])
                assert "*" not in resource["name"] and "All" not in operations, (name, acl)
                if resource["type"] == "topic" and resource["patternType"] == "prefix":
                    # only a Faust worker's own internal topics (<app id>-...)
                    assert access and resource["name"] == access.internal_prefix, (name, acl)
                    assert operations <= {"Create", "Describe", "DescribeConfigs", "Read",
                                          "Write"}, (name, acl)  # fmt: skip
                elif resource["type"] == "topic":
                    assert resource["patternType"] == "literal" and resource["name"] in topics
                    assert operations <= {"Read", "Write", "Describe"}, (name, acl)
                    if access and "Write" in operations:
                        assert resource["name"] in access.write, (name, acl)
                    if access and "Read" in operations:
                        assert resource["name"] in access.read, (name, acl)
                elif access:  # a service: exactly its consumer groups
                    assert resource["type"] == "group" and resource["patternType"] == "literal"
                    assert resource["name"] in access.groups and operations == {"Read"}
                else:  # a team: only its own consumer-group prefix
                    assert resource == {
                        "type": "group",
                        "name": f"{name}.",
                        "patternType": "prefix",
                    }
                    assert operations == {"Read"}, (name, acl)


def test_prod_runs_every_service_as_its_own_kafka_user_over_scram() -> None:
    objects = rendered("prod")
    users = {u["metadata"]["name"] for u in of_kind(objects, "KafkaUser")}
    for deployment in of_kind(objects, "Deployment"):
        (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                        if c["name"] == "app"]  # fmt: skip
        env = {e["name"]: e for e in container["env"]}
        name = deployment["metadata"]["name"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"].endswith("-kafka-bootstrap:9094"), name
        assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
        user = env["KAFKA_SASL_USERNAME"]["value"]
        assert user in users, name
        secret = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": user, "key": "password"}, name  # Strimzi's Secret of the user
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["KAFKA_SSL_CAFILE"]["value"] == f"{mounts['kafka-ca']}/ca.crt", name
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "zerocontact-cluster-ca-cert"
    # ... and the NetworkPolicies let the services reach the brokers on that port.
    (egress,) = [p for p in of_kind(objects, "NetworkPolicy")
                 if p["metadata"]["name"] == "services-egress"]  # fmt: skip
    kafka_ports = {
        port["port"]
        for rule in egress["spec"]["egress"]
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("strimzi.io/kind") == "Kafka"
            for peer in rule["to"]
        )
        for port in rule["ports"]
    }
    assert 9094 in kafka_ports


def test_compose_services_are_healthchecked_hardened_and_ordered(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mongodb"]["image"].startswith("mongo:")
    assert "--replSet" in services["mongodb"]["command"]
    apps = {n: s for n, s in services.items() if app_packages(s.get("command", []))}
    assert apps
    for name, service in apps.items():
        assert service["healthcheck"]["test"][:2] == ["CMD", "python"], name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["user"] == "10001:10001", name
        depends = dict(service["depends_on"])
        assert depends.pop("kafka") == {"condition": "service_healthy"}, name
        assert depends.pop("topics") == {"condition": "service_completed_successfully"}, name
        if "MONGODB_URI" in service["environment"]:
            assert depends.pop("mongodb") == {"condition": "service_healthy"}, name
        for other, condition in depends.items():  # a service it calls (loan -> identity's JWKS)
            assert other in apps and condition == {"condition": "service_healthy"}, (name, other)
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name}: bind published ports to loopback"
    assert services["topics"]["command"][:3] == ["zerocontact", "topics", "create"]


def assert_image_runs_its_own_service(where: str, image: str, command: list[str]) -> None:
    """A container runs the image of the service whose module its command starts; a command that
    starts none (`zerocontact topics create`) may run any service's image (each has the platform)."""
    service = image_service(image)
    assert service in service_folders(), f"{where}: {image} is built from no services/ folder"
    packages = app_packages(command)
    assert len(packages) <= 1, f"{where}: one service per container, not {sorted(packages)}"
    if packages:
        (package,) = packages
        # The package lives in the distribution of its services/ folder (zerocontact-<folder>).
        (folder,) = {p.parts[-4] for p in (ROOT / "services").glob(f"*/src/zerocontact/{package}")}
        assert service == folder, (
            f"{where}: runs zerocontact.{package} but its image is {image}: use zerocontact-{folder}"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_runs_the_image_of_its_service(overlay: str) -> None:
    objects = rendered(overlay)
    workloads = of_kind(objects, "Deployment") + of_kind(objects, "Job")
    assert workloads
    for workload in workloads:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            image = container["image"]
            assert image.startswith("registry.example.com/"), (
                f"{where}: {image} not from the overlay"
            )
            assert_image_runs_its_own_service(where, image, container["command"])


def test_every_compose_service_runs_and_builds_the_image_of_its_service(
    compose: dict[str, Any],
) -> None:
    ours = {n: s for n, s in compose["services"].items() if "zerocontact" in s.get("image", "")}
    assert set(ours) >= {
        n for n, s in compose["services"].items() if app_packages(s.get("command", []))
    }
    built: set[str] = set()
    for name, service in ours.items():
        image = service["image"]
        assert_image_runs_its_own_service(f"compose service {name}", image, service["command"])
        assert image.endswith(":${ZC_IMAGE_TAG:-local}"), name
        # Each builds its own image from the one Dockerfile, so `docker compose build` (or `up`)
        # never needs a pull of an image only built locally.
        build = service["build"]
        assert build["context"] == "." and "dockerfile" not in build, name
        assert build["args"] == {"SERVICE": image_service(image)}, name
        built.add(build["args"]["SERVICE"])
    assert built == set(service_folders()), "every services/ folder has an image in compose"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_name_a_registry_and_tag_for_every_service_image(overlay: str) -> None:
    kustomization = yaml.safe_load(
        (ROOT / "deploy" / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    images = {i["name"]: i for i in kustomization["images"]}
    assert sorted(images) == [f"zerocontact-{s}" for s in service_folders()]
    for name, entry in images.items():
        assert entry["newName"].endswith(f"/{name}") and entry["newTag"], entry
