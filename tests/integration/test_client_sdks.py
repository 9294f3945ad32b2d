"""The generated partner clients (Go, Java, TypeScript; clients/, docs/clients.md) and the
Python distribution's example, each run as a real process against the real gateway suite:
the 310 journey over mTLS with the partner's certificate and credential, from registration to
a decided application and a disbursed loan, printing each call's request id and a refusal's
google.rpc details.

The clients are built by ``bash clients/build.sh`` (``make clients``; cached, so a second build
is a few seconds). In CI every language must build and run; elsewhere a language whose
toolchain (go, mvn, npm) is missing is skipped, saying so.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines
from tests.integration.test_gateway_support import Suite, start_suite

# A cold build (no Go, Maven or npm caches) takes minutes: more than the default 300 s.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[2]
SCOPES = ["identity:write", "identity:read", "loans:write", "loans:read"]
TOOLCHAINS = {"go": "go", "java": "mvn", "ts": "npm"}
REQUEST_ID = r"[0-9a-f]{32}"


def journey_command(lang: str) -> list[str]:
    if lang == "go":
        return [str(ROOT / ".cache/clients/bin/zc-journey-go")]
    if lang == "java":
        return ["java", "-jar", str(ROOT / "clients/java/target/zerocontact-client.jar")]
    if lang == "ts":
        return ["node", str(ROOT / "clients/ts/dist/journey.js")]
    return [sys.executable, str(ROOT / "examples/partner_310.py")]


@pytest.fixture(scope="module")
def built() -> set[str]:
    """Build every language whose toolchain is here (all of them in CI)."""
    langs = [lang for lang, tool in TOOLCHAINS.items() if shutil.which(tool)]
    missing = sorted(set(TOOLCHAINS) - set(langs))
    if missing and os.environ.get("CI"):
        pytest.fail(f"toolchains missing in CI: {missing}")
    if langs:
        result = subprocess.run(
            ["bash", "clients/build.sh", *langs],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return set(langs)


@pytest.fixture(scope="module")
async def suite(
    built: set[str],
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    async with AsyncExitStack() as stack:
        s = await start_suite(
            engines, kafka_admin, mongo_client, tmp_path_factory.mktemp("sdks"), stack
        )
        partner = await s.add_partner("sdk-partner", SCOPES)
        (s.certs_dir / "sdk-partner.crt").write_bytes(partner.cert)
        (s.certs_dir / "sdk-partner.key").write_bytes(partner.key)
        yield s


async def run_journey(suite: Suite, lang: str) -> str:
    """Run one language's journey as a subprocess (the gateway serves on this event loop,
    so the process is awaited, never waited for synchronously)."""
    partner = suite.partners["sdk-partner"]
    args = [
        "--target", suite.target, "--ca", str(suite.certs_dir / "ca.crt"),
        "--cert", str(suite.certs_dir / "sdk-partner.crt"),
        "--key", str(suite.certs_dir / "sdk-partner.key"),
        "--server-name", "localhost", "--identity-url", suite.identity.url,
        "--credential", partner.credential,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *journey_command(lang),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = out.decode()
    assert process.returncode == 0, f"{lang} journey exited {process.returncode}:\n{text}"
    return text


@pytest.mark.parametrize("lang", ["go", "java", "ts"])
async def test_generated_client_runs_the_310_journey(
    suite: Suite, built: set[str], lang: str
) -> None:
    if lang not in built:
        pytest.skip(f"{TOOLCHAINS[lang]} not installed (CI requires it)")
    out = await run_journey(suite, lang)
    assert re.search(rf"^registered [0-9a-f-]{{36}} .* request-id {REQUEST_ID}$", out, re.M), out
    assert re.search(r"^authenticated .*AAL2$", out, re.M), out
    assert re.search(r"^verified .*VERIFIED$", out, re.M), out
    # a refusal's google.rpc details: ErrorInfo reason, BadRequest field, RequestInfo id
    refused = re.search(
        rf"^refused as expected: \S+ INVALID_REQUEST fields application_id request-id ({REQUEST_ID})",
        out,
        re.M,
    )
    assert refused, out
    assert re.search(rf"^applied [0-9a-f-]{{36}} AWAITING_RISK request-id {REQUEST_ID}$", out, re.M)
    assert re.search(rf"^watching request-id {REQUEST_ID}$", out, re.M), out
    assert re.search(r"^decided APPROVED$", out, re.M), out
    accepted = re.search(rf"^accepted loan ([0-9a-f-]{{36}}) request-id {REQUEST_ID}$", out, re.M)
    assert accepted, out
    assert re.search(rf"^disbursed {accepted.group(1)}$", out, re.M), out


async def test_python_distribution_runs_the_310_journey(suite: Suite) -> None:
    """examples/partner_310.py on zerocontact-partner-client."""
    out = await run_journey(suite, "python")
    assert re.search(r"^KYC KYC_LEVEL_VERIFIED$", out, re.M), out
    assert re.search(r"^disbursed$", out, re.M), out
