"""The deployment validators pass on what is committed and fail on a deliberately broken copy.

Each validator runs offline on the rendered overlays (``make lint-deploy`` runs the same ones):
kubernetes-validate (Kubernetes API schemas), kube-score (best practices), deploycheck
(MongoDBCommunity into the operator's Go types; docker-compose.yml through compose-go; the
Dockerfile through BuildKit's frontend in lint mode). A
validator that accepts a broken file would make the passing runs worthless, hence the pairs.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy_tooling import (
    DEPLOYCHECK,
    K8S_VERSION,
    KUBE_SCORE,
    KUBERNETES_VALIDATE,
    OVERLAYS,
    ROOT,
    of_kind,
    rendered,
    rendered_text,
    require,
    run,
)

KUBE_SCORE_ARGS = ("score", "--output-format", "ci", "--exit-one-on-warning",
                   "--enable-optional-test", "container-seccomp-profile",
                   "--enable-optional-test", "container-ports-check")  # fmt: skip


def write(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def schema_check(path: Path) -> Any:
    tool = require(KUBERNETES_VALIDATE)
    return run(tool, "--strict", "--quiet", "--no-warn", "-k", K8S_VERSION, path)


def first_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return of_kind(objects, "Deployment")[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_matches_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered_text(overlay))
    result = schema_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("unknown-field", "imagePullPolice"),
        ("wrong-type", "replicas"),
    ],
)
def test_schema_validation_rejects_a_broken_deployment(
    breakage: str, expected: str, tmp_path: Path
) -> None:
    objects = rendered("prod")
    deployment = first_deployment(objects)
    if breakage == "unknown-field":
        deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    else:
        deployment["spec"]["replicas"] = "three"
    result = schema_check(write(tmp_path / "broken.yaml", objects))
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kube_score_finds_nothing_in_the_overlay(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered_text(overlay))
    result = run(require(KUBE_SCORE), *KUBE_SCORE_ARGS, path)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("breakage", "finding"),
    [
        ("no-resources", "CPU limit is not set"),
        ("writable-root", "writable root filesystem"),
        ("no-pdb", "No matching PodDisruptionBudget"),
    ],
)
def test_kube_score_rejects_a_weakened_workload(
    breakage: str, finding: str, tmp_path: Path
) -> None:
    objects = rendered("prod")
    deployment = first_deployment(objects)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if breakage == "no-resources":
        del container["resources"]
    elif breakage == "writable-root":
        container["securityContext"]["readOnlyRootFilesystem"] = False
    else:
        name = deployment["metadata"]["name"]
        objects = [o for o in objects if not (o["kind"] == "PodDisruptionBudget"
                                               and o["metadata"]["name"] == name)]  # fmt: skip
    result = run(require(KUBE_SCORE), *KUBE_SCORE_ARGS, write(tmp_path / "weak.yaml", objects))
    assert result.returncode != 0
    assert finding.lower() in result.stdout.lower(), result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_replica_set_decodes_into_the_operator_types(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered_text(overlay))
    result = run(require(DEPLOYCHECK), "mongodb", path)
    assert result.returncode == 0, result.stderr
    assert "1 MongoDBCommunity valid" in result.stdout


@pytest.mark.parametrize(
    ("breakage", "finding"),
    [
        ("misspelt-field", "unknown field"),
        ("no-members", "spec.members"),
        ("wrong-type", "cannot unmarshal"),
    ],
)
def test_mongodb_check_rejects_a_broken_replica_set(
    breakage: str, finding: str, tmp_path: Path
) -> None:
    objects = rendered("prod")
    (mdb,) = of_kind(objects, "MongoDBCommunity")
    if breakage == "misspelt-field":
        mdb["spec"]["member"] = mdb["spec"].pop("members")
    elif breakage == "no-members":
        mdb["spec"]["members"] = 0
    else:
        mdb["spec"]["users"][0]["roles"] = "readWrite"
    result = run(require(DEPLOYCHECK), "mongodb", write(tmp_path / "broken.yaml", objects))
    assert result.returncode == 1
    assert finding in result.stderr, result.stderr


def compose_copy(tmp_path: Path, compose: str | None = None, env: str | None = None) -> Path:
    (tmp_path / "docker-compose.yml").write_text(
        compose if compose is not None else (ROOT / "docker-compose.yml").read_text()
    )
    (tmp_path / ".env.example").write_text(
        env if env is not None else (ROOT / ".env.example").read_text()
    )
    return tmp_path / "docker-compose.yml"


def test_compose_file_loads_as_docker_compose_loads_it(tmp_path: Path) -> None:
    result = run(require(DEPLOYCHECK), "compose", ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_compose_check_rejects_a_broken_file(tmp_path: Path) -> None:
    tool = require(DEPLOYCHECK)
    text = (ROOT / "docker-compose.yml").read_text()
    document = yaml.safe_load(text)
    broken = copy.deepcopy(document)
    broken["services"]["skeleton-projection"]["depends_on"] = {
        "kafka": {"condition": "service_ready"}
    }
    result = run(tool, "compose", compose_copy(tmp_path, yaml.safe_dump(broken)))
    assert result.returncode == 1
    assert "condition" in result.stderr
    broken = copy.deepcopy(document)
    broken["services"]["skeleton-projection"]["healthcheck"]["intervall"] = "5s"
    result = run(tool, "compose", compose_copy(tmp_path, yaml.safe_dump(broken)))
    assert result.returncode == 1
    assert "intervall" in result.stderr


def test_compose_needs_every_secret_listed_in_env_example(tmp_path: Path) -> None:
    env = (ROOT / ".env.example").read_text().replace("ZC_SKELETON_PII_INDEX_KEY=\n", "")
    result = run(require(DEPLOYCHECK), "compose", compose_copy(tmp_path, env=env))
    assert result.returncode == 1
    assert "ZC_SKELETON_PII_INDEX_KEY" in result.stderr


SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_passes_buildkits_checks_for_every_service(service: str) -> None:
    result = run(require(DEPLOYCHECK), "dockerfile", ROOT / "Dockerfile", f"SERVICE={service}")
    assert result.returncode == 0, result.stderr
    assert "no lint warnings" in result.stdout


def test_dockerfile_check_rejects_a_broken_file(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    broken = text.replace("FROM uv AS manifests", "FROM uv as manifests", 1)
    broken = broken.replace("ENV PATH=/opt/venv/bin:$PATH", "ENV PATH=/opt/venv/bin:$PAHT", 1)
    assert broken.count("as manifests") == 1 and "$PAHT" in broken
    (tmp_path / "Dockerfile").write_text(broken)
    result = run(require(DEPLOYCHECK), "dockerfile", tmp_path / "Dockerfile", "SERVICE=loan")
    assert result.returncode == 1
    assert "FromAsCasing" in result.stderr and "UndefinedVar" in result.stderr
    (tmp_path / "Dockerfile").write_text(
        text.replace("RUN --mount=type=cache,", "RUN --mount=type=cahce,", 1)
    )
    result = run(require(DEPLOYCHECK), "dockerfile", tmp_path / "Dockerfile", "SERVICE=loan")
    assert result.returncode == 1
    assert "cahce" in result.stderr


def test_stale_kafka_topics_file_is_reported(tmp_path: Path) -> None:
    catalog = tmp_path / "topics.toml"
    original = (ROOT / "proto" / "topics.toml").read_text()
    catalog.write_text(original.replace("partitions = 3", "partitions = 4", 1))
    output = tmp_path / "kafka-topics.yaml"
    shutil.copy(ROOT / "deploy/k8s/components/distributed-engines/kafka-topics.yaml", output)
    from deploy.tools.kafka_topics import main

    assert main(["--catalog", str(catalog), "--output", str(output), "--check"]) == 1
    assert main(["--catalog", str(catalog), "--output", str(output)]) == 0
    assert "partitions: 4" in output.read_text()
    assert main(["--catalog", str(catalog), "--output", str(output), "--check"]) == 0
