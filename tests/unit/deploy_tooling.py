"""Shared by the tests of deploy/: where the validators are, and rendering an overlay.

The validators are installed by ``deploy/tools/install.sh`` (``.ci/run`` runs it through
``make lint-deploy``); a test that needs one that is missing is skipped and says so.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".cache" / "tools"
KUSTOMIZE = TOOLS / "bin" / "kustomize"
KUBE_SCORE = TOOLS / "bin" / "kube-score"
DEPLOYCHECK = TOOLS / "bin" / "deploycheck"
KUBERNETES_VALIDATE = TOOLS / "venv" / "bin" / "kubernetes-validate"
OVERLAYS = sorted(p.name for p in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir())
K8S_VERSION = "1.33.0"  # as in deploy/tools/lint.sh


def require(tool: Path) -> Path:
    """The tool's path, or skip the calling test when it is not installed."""
    if not tool.exists():
        pytest.skip(f"{tool.relative_to(ROOT)} not installed: run `bash deploy/tools/install.sh`")
    return tool


@functools.cache
def rendered_text(overlay: str) -> str:
    """``kustomize build`` of one overlay (cached: the manifests do not change during a run)."""
    result = subprocess.run(
        [str(require(KUSTOMIZE)), "build", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
    return result.stdout


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects, parsed (a fresh copy each call: tests may mutate it)."""
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a validator; its output is in the result for assertion messages."""
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=120
    )
