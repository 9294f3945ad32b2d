"""What each service image holds, from uv.lock alone (no Docker, no install): the Dockerfile's
build stage installs ``uv sync --frozen --no-dev --no-editable --package zerocontact-<service>``,
which is the locked dependency closure of that member. These tests keep the heavy and
service-specific packages out of the images that do not need them (docs/deployment.md, "Images").
Markers are ignored, so a closure here is a superset of any platform's install."""

from __future__ import annotations

import functools
import re
import tomllib
from typing import Any

import pytest

from tests.unit.deploy_tooling import ROOT

DOCKERFILE = ROOT / "Dockerfile"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
# Identity's trust (faces, liveness): dlib, OpenCV and the face models (and numpy under them).
FACES = {"dlib-bin", "opencv-python-headless", "face-recognition-models", "numpy"}
# The signals worker: Faust and its RocksDB tables.
STREAMS = {"faust-streaming", "rocksdict"}
# The assistant's understanding: tokenizer, BM25, classifier, fuzzy matching (numpy and, under
# scikit-learn, scipy come with it).
UNDERSTANDING = {"jieba", "bm25s", "scikit-learn", "rapidfuzz"}
UNDERSTANDING_NEEDS = {"numpy", "scipy"}
# Never in any image: the dev group's tools and installers.
DEV = {"pytest", "hypothesis", "testcontainers", "grpcio-tools", "mypy-protobuf", "ruff",
       "mypy", "uv", "supervisor", "py-spy", "scikit-image", "matplotlib", "scipy", "pip"}  # fmt: skip


@functools.cache
def locked() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p for p in lock["package"]}


def closure(root: str) -> set[str]:
    """Every package `uv sync --no-dev --package <root>` may install (extras followed)."""
    packages = locked()
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        todo += [(d["name"], tuple(sorted(d.get("extra", [])))) for d in deps]
    return {name for name, _ in done}


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_holds_its_service_the_platform_and_contracts_only(service: str) -> None:
    members = {n for n in closure(f"zerocontact-{service}") if n.startswith("zerocontact-")}
    assert members == {f"zerocontact-{service}", "zerocontact-platform", "zerocontact-contracts"}


@pytest.mark.parametrize("service", SERVICES)
def test_faces_and_faust_only_where_they_are_used(service: str) -> None:
    packages = closure(f"zerocontact-{service}")
    assert (packages & FACES == FACES) is (service == "identity"), sorted(packages & FACES)
    assert (packages & STREAMS == STREAMS) is (service == "signals"), sorted(packages & STREAMS)
    assert (packages & UNDERSTANDING == UNDERSTANDING) is (service == "assistant"), sorted(
        packages & UNDERSTANDING
    )
    allowed = UNDERSTANDING_NEEDS if service == "assistant" else set()
    if service not in {"identity", "signals"}:
        heavy = packages & (FACES | STREAMS | UNDERSTANDING) - allowed
        if service == "assistant":
            heavy -= UNDERSTANDING
        assert not heavy, sorted(heavy)
    assert not packages & DEV - allowed, sorted(packages & DEV - allowed)


def test_the_dockerfile_builds_one_service_without_dev_tools() -> None:
    text = DOCKERFILE.read_text()
    syncs = re.findall(r"^\s+uv sync (.*)$", text, re.MULTILINE)  # RUN lines, not comments
    assert syncs, "the build stage installs with uv sync"
    for sync in syncs:
        for flag in ("--frozen", "--no-dev", "--no-editable", '--package "zerocontact-$SERVICE"'):
            assert flag in sync, (flag, sync)
    assert "ENV UV_PROJECT_ENVIRONMENT=/opt/venv" in text
    runtime = text[text.index("AS runtime") :]
    copies = re.findall(r"^COPY (.*)$", runtime, re.MULTILINE)
    assert copies == [
        "--from=build /opt/venv /opt/venv",
        "proto/topics.toml /app/proto/topics.toml",
    ]
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "ZC_TOPIC_CATALOG=/app/proto/topics.toml" in runtime
    for service in SERVICES:
        assert f"--build-arg SERVICE={service} " in text, f"document the build of {service}"
