"""Bad local configuration gives one line saying what to do, never a hang or a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ROOT / "deploy" / "local" / "engines.py"


def _home_with_cache(tmp_path: Path) -> Path:
    cache = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache")
    if not (cache / "kafka" / "libs").exists() or not (cache / "bin").exists():
        pytest.skip("needs the fetched engine cache (make fetch)")
    home = tmp_path / "engines"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to(cache / "kafka" / "libs")
    (home / "bin").symlink_to(cache / "bin")
    return home


def _engines(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENGINES), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ports() -> dict[str, str]:
    return {
        "ZC_KAFKA_PORT": str(free_port()),
        "ZC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "ZC_KAFKA_SASL_PORT": str(free_port()),
        "ZC_MONGODB_PORT": str(free_port()),
    }


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_port_that_is_not_a_number(tmp_path: Path) -> None:
    env = {**os.environ, "ZC_LOCAL_HOME": str(tmp_path), **_ports(), "ZC_KAFKA_PORT": "kafka"}
    line = _one_line_error(_engines("start", "--engines-only", env=env))
    assert "ZC_KAFKA_PORT='kafka' is not a TCP port number" in line


def test_port_taken_by_another_program(tmp_path: Path) -> None:
    home = _home_with_cache(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**os.environ, "ZC_LOCAL_HOME": str(home), **_ports(), "ZC_MONGODB_PORT": str(port)}
        line = _one_line_error(_engines("start", "--engines-only", env=env))
    assert f"port {port} is in use by pid {os.getpid()}" in line
    assert "set ZC_MONGODB_PORT" in line


def test_java_missing(tmp_path: Path) -> None:
    home = _home_with_cache(tmp_path)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {**os.environ, "ZC_LOCAL_HOME": str(home), **_ports(), "PATH": str(empty)}
    line = _one_line_error(_engines("start", "--engines-only", env=env))
    assert "java not found: install a JDK 17" in line


def test_go_missing_when_ferretdb_must_be_built(tmp_path: Path) -> None:
    home = _home_with_cache(tmp_path)
    (home / "bin").unlink()  # nothing built yet in this home
    java = Path(subprocess.run(["which", "java"], capture_output=True, text=True).stdout.strip())
    only_java = tmp_path / "only-java"
    only_java.mkdir()
    (only_java / "java").symlink_to(java.resolve())
    env = {**os.environ, "ZC_LOCAL_HOME": str(home), **_ports(), "PATH": str(only_java)}
    line = _one_line_error(_engines("fetch", env=env))
    assert "go" in line
    assert "install Go" in line


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    env = {**os.environ, "ZC_LOCAL_HOME": str(tmp_path), **_ports()}
    result = _engines("status", env=env)
    assert result.returncode == 3
    assert "not running" in result.stdout + result.stderr
