"""A new user's first minutes with a running suite, as ``make up`` runs it (every service a
separate process: ``engines.py start`` on the session's engines).

- ``make up`` registered ``demo-partner``: its credential file is 0600, a second registration
  keeps the credential, and ``make demo`` runs the 310 and payroll journeys with it.
- Marketing starts with its demo catalog and segment: a first campaign is accepted and passes
  the compliance review.
- docs/gateway.md's quick start, its shell blocks run as written.
- The ``zerocontact`` command with no settings and no local suite: one line naming them.

The services listen on their fixed ports of ``deploy/local/services.toml`` (8001-8004, 8010,
8011, 6066, 8051, 50051), so nothing else may hold them. They are started only when they do not
all answer already (a ``make up`` of the same cache is reused), and then stopped at the end
(the engines stay for the rest of the session).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from pymongo import MongoClient

from tests.integration.harness import Engines, engines_started, local_home

ROOT = Path(__file__).resolve().parents[2]
ALL_SCOPES = {
    "identity:write", "identity:read", "loans:write", "loans:read", "payroll:write",
    "payroll:read", "signals:read", "webhooks:write", "webhooks:read", "assistant:write",
    "assistant:read",
}  # fmt: skip
MARKETING_URL = "http://127.0.0.1:8004"


@dataclass
class RunningSuite:
    engines: Engines
    home: Path

    @property
    def run(self) -> Path:
        return self.home / "run"

    def secret(self, name: str) -> str:
        secrets: dict[str, str] = json.loads((self.run / "local-secrets.json").read_text())
        return secrets[name]


@pytest.fixture(scope="module")
def suite(engines: Engines) -> Iterator[RunningSuite]:
    if engines.origin != "embedded":
        pytest.skip(f"the suite runs on the embedded engines, not {engines.origin} ones")

    def refused(error: str) -> NoReturn:
        pytest.fail(f"the suite did not start: {error}")

    # the services only at the end: the session's engines serve the other modules
    with engines_started(["--if-needed", "--timeout", "180"], ["--services-only"], refused=refused):
        yield RunningSuite(engines, local_home())


def _run(
    command: list[str] | str, *, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    """Run in the repository's root; the output, or a failure showing it."""
    out = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
        env=env, shell=isinstance(command, str), executable="/bin/bash" if isinstance(command, str) else None,
    )  # fmt: skip
    assert out.returncode == 0, f"{command} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _without_suite_settings() -> dict[str, str]:
    """This environment without the gateway's and the engines' settings: the command must
    find them in the local suite (only ZC_LOCAL_HOME and the ports say which suite)."""
    dropped = ("ZC_GATEWAY_", "KAFKA_", "MONGODB_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def test_demo_partner_is_registered_kept_and_runs_both_journeys(suite: RunningSuite) -> None:
    path = suite.run / "demo-partner.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = json.loads(path.read_text())
    assert first["partner_id"] == "demo-partner" and first["credential"].startswith("zcp_")
    assert set(first["scopes"]) == ALL_SCOPES
    for name in ("ca", "cert", "key"):
        assert Path(first[name]).is_file(), name
    mongo: MongoClient[dict[str, object]]
    with MongoClient(suite.engines.mongodb_uri, serverSelectionTimeoutMS=10_000) as mongo:
        stored = mongo["zc_gateway"]["partners"].find_one({"_id": "demo-partner"})
    assert stored is not None and stored["active"] and set(stored["scopes"]) == ALL_SCOPES

    # a second `make up` runs the same setup command: the same credential, still 0600; run from
    # elsewhere with no gateway settings in the environment, it finds the suite's own
    again = subprocess.run(
        [sys.executable, "-m", "zerocontact.platform.cli", "gateway", "partners", "dev",
         "demo-partner"],
        cwd="/", env=_without_suite_settings(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "kept credential" in again.stdout
    assert json.loads(path.read_text())["credential"] == first["credential"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # `make demo`: both journeys through the gateway with that credential, and their timelines
    shown = _run(["make", "-s", "demo"], timeout=240)
    assert "disbursed" in shown.splitlines(), shown
    assert re.search(r"s\s+ACCEPTED\s+loan DISBURSED\s+loan_disbursed", shown), shown
    assert re.search(r"s\s+watch: COMPLETED\s+ACSC\s+paid 5/5 failed 0", shown), shown
    assert "all salaries paid" in shown.splitlines(), shown


def test_marketing_starts_with_the_demo_catalog_and_a_first_campaign_is_accepted(
    suite: RunningSuite,
) -> None:
    headers = {
        "X-Operator-Key": suite.secret("ZC_MARKETING_OPERATOR_KEY"),
        "X-Operator-Id": "alice",
    }
    with httpx.Client(base_url=MARKETING_URL, headers=headers, timeout=10) as http:
        products = {p["id"]: p for p in http.get("/v1/products").raise_for_status().json()}
        assert {"demo-merchant-loan", "demo-payroll-account", "demo-cash-fund"} <= products.keys()
        assert products["demo-merchant-loan"]["annual_rate"] == "7.2%"
        # the campaign of docs/marketing.md ("Demo catalog")
        created = http.post(
            "/v1/campaigns",
            headers={"Idempotency-Key": f"first-campaign-{uuid.uuid4().hex[:12]}"},
            json={
                "name": "First campaign", "goal": "merchant loans", "budget_minor": 100000,
                "product_id": "demo-merchant-loan", "segment_id": "demo-verified-customers",
                "holdout_percent": 10,
                "variants": [{"id": "push1", "channel": "app_push", "title": "经营贷",
                              "body": "商户经营贷，年化利率 7.2%，按日计息，随借随还。"}],
            },
        )  # fmt: skip
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "draft"
        reviewed = http.post(
            f"/v1/campaigns/{created.json()['id']}/review",
            headers={"Idempotency-Key": uuid.uuid4().hex[:20]},
        )
        assert reviewed.status_code == 200, reviewed.text
        assert reviewed.json()["status"] == "pending_approval", reviewed.json()["findings"]


def _quick_start_blocks() -> list[str]:
    """The ```bash blocks of docs/gateway.md's "Quick start" section, in order."""
    text = (ROOT / "docs" / "gateway.md").read_text()
    section = re.search(r"^## Quick start.*?$(.*?)^## ", text, re.S | re.M)
    assert section, "docs/gateway.md has no Quick start section"
    return re.findall(r"^```bash\n(.*?)^```$", section.group(1), re.S | re.M)


def test_quick_start_works_as_written(suite: RunningSuite) -> None:
    blocks = _quick_start_blocks()
    assert len(blocks) == 3, blocks  # make up, the example partner, a first call
    assert blocks[0].strip() == "make up"
    outputs = [_run(f"set -euo pipefail\n{block}", timeout=300) for block in blocks]
    # make up printed the exact command that runs the example against the suite; it runs
    printed = [
        line.strip() for line in outputs[0].splitlines() if "examples/partner_310.py" in line
    ]
    assert len(printed) == 1, outputs[0]
    command = shlex.split(printed[0])
    assert command[command.index("--credential-file") + 1].endswith("run/demo-partner.json")
    assert "--ca" in command and "--cert" in command and "--key" in command
    assert "disbursed" in _run(command, timeout=120).splitlines()
    assert "disbursed" in outputs[1].splitlines(), outputs[1]
    # the first call and where its request id is
    assert "product merchant-310" in outputs[2], outputs[2]
    assert re.search(
        r"request id \(trailing metadata x-request-id\): [0-9a-f]{32}$", outputs[2], re.M
    )
    assert re.search(r"its request id: [0-9a-f]{32}$", outputs[2], re.M), outputs[2]


def test_a_missing_setting_is_one_line_naming_it(tmp_path: Path) -> None:
    """No settings in the environment and no local suite: one error line, no traceback."""
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ZC_LOCAL_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "zerocontact.platform.cli", "gateway", "partners", "register",
         "demo-partner", "--scope", "loans:read"],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    for name in (
        "ZC_GATEWAY_CREDENTIAL_PEPPER", "ZC_GATEWAY_PII_KEY", "ZC_GATEWAY_PII_INDEX_KEY",
        "ZC_GATEWAY_TLS_CERT_FILE", "ZC_GATEWAY_TLS_KEY_FILE", "ZC_GATEWAY_CLIENT_CA_FILE",
    ):  # fmt: skip
        assert name in lines[0], lines[0]
    assert lines[0].startswith("error: missing setting")
