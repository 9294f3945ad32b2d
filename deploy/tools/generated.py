"""Write generated files, or with ``--check`` report the stale ones (the deploy tools' shared step)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]


def write_or_check(outputs: dict[Path, str], *, check: bool, regenerate: str) -> int:
    """Write each file's text, or (``check``) write nothing and return 1 if any differs.

    ``regenerate`` is the command a stale file's message tells the reader to run.
    """
    stale = 0
    for path, text in outputs.items():
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if not check:
            path.write_text(text)
            print(f"wrote {shown}")
        elif not path.exists() or path.read_text() != text:
            print(f"{shown} is stale: run `{regenerate}`", file=sys.stderr)
            stale = 1
    return stale
