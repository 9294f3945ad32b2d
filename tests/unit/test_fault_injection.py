"""Crash points (platform.faults): off by default, refused where they could hurt, and a real kill."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from zerocontact.platform.faults import (
    AFTER_PUBLISH,
    AFTER_STATE_WRITE,
    NONE,
    CrashPoints,
    FaultInjectionRefused,
    crash_points,
    crash_points_from,
)
from zerocontact.platform.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
ARMED = {"ZC_FAULT_CRASH_POINTS": f"{AFTER_STATE_WRITE},{AFTER_PUBLISH}"}


def test_nothing_is_armed_by_default() -> None:
    assert crash_points_from({}) == NONE
    assert crash_points_from({"ZC_FAULT_INJECTION": "allow"}) == NONE
    NONE.reached(AFTER_PUBLISH)  # a no-op: this test process is still alive


def test_armed_only_with_the_explicit_allowance() -> None:
    with pytest.raises(FaultInjectionRefused, match="ZC_FAULT_INJECTION=allow"):
        crash_points_from(ARMED)
    with pytest.raises(FaultInjectionRefused, match="ZC_FAULT_INJECTION=allow"):
        crash_points_from({**ARMED, "ZC_FAULT_INJECTION": "yes"})
    armed = crash_points_from({**ARMED, "ZC_FAULT_INJECTION": "allow"})
    assert armed == CrashPoints(frozenset({AFTER_STATE_WRITE, AFTER_PUBLISH}), 0.05)


def test_refused_in_a_kubernetes_pod_whatever_else_is_set() -> None:
    env = {**ARMED, "ZC_FAULT_INJECTION": "allow", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    with pytest.raises(FaultInjectionRefused, match="Kubernetes pod"):
        crash_points_from(env)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ZC_FAULT_CRASH_POINTS": "after_lunch"}, "unknown point"),
        ({"ZC_FAULT_CRASH_PROBABILITY": "0"}, r"in \(0, 1\]"),
        ({"ZC_FAULT_CRASH_PROBABILITY": "1.5"}, r"in \(0, 1\]"),
        ({"ZC_FAULT_CRASH_PROBABILITY": "often"}, "'often'"),
    ],
)
def test_bad_settings_are_one_line(extra: dict[str, str], message: str) -> None:
    with pytest.raises(FaultInjectionRefused, match=message) as refused:
        crash_points_from({**ARMED, "ZC_FAULT_INJECTION": "allow", **extra})
    assert "\n" not in str(refused.value)


def test_a_service_does_not_start_with_refused_crash_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZC_FAULT_CRASH_POINTS", AFTER_PUBLISH)
    monkeypatch.delenv("ZC_FAULT_INJECTION", raising=False)
    crash_points.cache_clear()
    try:
        with pytest.raises(ValidationError, match="fault injection is not allowed"):
            ServiceSettings()
    finally:
        crash_points.cache_clear()


def test_an_armed_point_kills_the_process_with_sigkill() -> None:
    code = (
        "from zerocontact.platform.faults import crash_points\n"
        "crash_points().reached('after_publish')\n"
        "print('survived')\n"
    )
    env = {**ARMED, "ZC_FAULT_INJECTION": "allow", "ZC_FAULT_CRASH_PROBABILITY": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL
    assert "survived" not in done.stdout
    assert "fault injection: crash at after_publish" in done.stderr


def test_no_deployment_arms_crash_points() -> None:
    deployed = [ROOT / "docker-compose.yml", ROOT / "Dockerfile", *(ROOT / "deploy").rglob("*")]
    offenders = [
        str(path.relative_to(ROOT))
        for path in deployed
        if path.is_file()
        and path.suffix in {".yml", ".yaml", ".toml", ".env", ""}
        and "ZC_FAULT_" in path.read_text(errors="replace")
    ]
    assert offenders == []
