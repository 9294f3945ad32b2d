"""Environments made by the workspace's uv, and the contracts-only Python a partner would have.

Shared by test_distributions.py and test_consumer_example.py. Environments come from uv's
cache (hard links, no downloads when the cache is warm); each takes a few seconds. They run
with ``python -I`` from their own folder, so neither the repository nor the development venv
can leak into them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"  # the venv's uv, pinned in the dev group


def uv_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {
        **env,
        "UV_LINK_MODE": "hardlink",  # the cache and the temporary folder share a disk here
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        **extra,
    }


def run(args: list[str | Path], *, cwd: Path, env: dict[str, str]) -> tuple[str, float]:
    """Run a command; return its stdout and how long it took (seconds). Fail with its output."""
    started = time.monotonic()
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done.stdout, took


def lock_pins() -> str:
    """``name==version`` of every registry package in uv.lock (a constraints file)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return "".join(
        f"{p['name']}=={p['version']}\n"
        for p in lock["package"]
        if "registry" in p.get("source", {})
    )


@pytest.fixture(scope="module")
def contracts_only_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the zerocontact-contracts wheel and aiokafka, nothing else of the suite."""
    folder = tmp_path_factory.mktemp("contracts-only")
    dist, venv, pins = folder / "dist", folder / "venv", folder / "pins.txt"
    pins.write_text(lock_pins())
    env = uv_env()
    _, build_s = run(
        [UV, "build", "--package", "zerocontact-contracts", "--wheel", "--out-dir", dist, "-q"],
        cwd=ROOT,
        env=env,
    )
    (wheel,) = dist.glob("zerocontact_contracts-*.whl")
    _, venv_s = run([UV, "venv", "-q", "--python", sys.executable, venv], cwd=folder, env=env)
    python = venv / "bin" / "python"
    _, install_s = run(
        [UV, "pip", "install", "-q", "--python", python, "-c", pins, wheel, "aiokafka"],
        cwd=folder,
        env=env,
    )
    print(f"contracts wheel {build_s:.1f}s, venv {venv_s:.1f}s, install {install_s:.1f}s")
    return python
