"""The demo partner ``make up`` registers (a setup command of services.toml), and the command
it prints to run ``examples/partner_310.py`` against the suite with it."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from .common import log
from .layout import ROOT, Layout

DEMO_PARTNER = "demo-partner"


def _shown(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (commands run from there)."""
    resolved = Path(os.path.abspath(path))  # a venv's python is a symlink: keep its name
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def partner_310_command(layout: Layout) -> list[str] | None:
    """The command that runs the 310 example as the demo partner (None before it exists)."""
    path = layout.run / f"{DEMO_PARTNER}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return [
        _shown(sys.executable), "examples/partner_310.py", "--target", str(doc["target"]),
        "--ca", _shown(doc["ca"]), "--cert", _shown(doc["cert"]), "--key", _shown(doc["key"]),
        "--credential-file", _shown(path),
    ]  # fmt: skip


def print_demo(layout: Layout) -> None:
    """What ``make up`` prints after the endpoints: the demo partner and how to use it."""
    command = partner_310_command(layout)
    if command is None:
        return
    log("")
    log(
        f"demo partner: {DEMO_PARTNER}, every scope; its credential is in "
        f"{command[-1]} (mode 0600). The 310 journey through the gateway:"
    )
    log("  " + shlex.join(command))
    log("Both journeys (310 and payroll) with their timelines: make demo")
