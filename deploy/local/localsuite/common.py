"""What every module uses: the one error type users see, logging and running commands."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class EngineError(Exception):
    """A problem the user can fix; printed as one line on stderr, exit status 1."""


def log(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    log(f"{what} ...")
    yield
    log(f"{what}: done in {time.monotonic() - started:.1f} s")


def run_captured(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, output captured; ``env`` is added to this process's environment."""
    full_env = {**os.environ, **env} if env else None
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=full_env)


NETWORK_ERROR = re.compile(
    r"(Could not transfer|UnknownHost|Unknown host|Connection refused|timed out|"
    r"Network is unreachable|No route to host|Could not resolve|dial tcp|no such host|"
    r"TLS handshake|proxyconnect)",
    re.IGNORECASE,
)


def first_error_line(text: str) -> str:
    for line in text.splitlines():
        if NETWORK_ERROR.search(line):
            # The cause is at the end of Maven's and Go's long lines: keep the tail.
            line = re.sub(r"\s+", " ", line.split(" -> [Help")[0]).strip()
            return line if len(line) <= 160 else "..." + line[-157:]
    for line in text.splitlines():
        if "ERROR" in line:
            return re.sub(r"\s+", " ", line.replace("[ERROR]", "")).strip()[:200]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"
