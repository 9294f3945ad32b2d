"""bench/chaos.py: which scenarios it runs, in which order, and the table it prints."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_runner", ROOT / "bench" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_that_takes_quick_is_a_scenario_in_the_fixed_order() -> None:
    names = _runner().scenarios()
    folder = ROOT / "tests" / "chaos"
    takes_quick = {p.stem for p in folder.glob("*.py") if '"--quick"' in p.read_text()}
    assert set(names) == takes_quick
    assert {"kill9", "replay", "soak"} <= set(names)
    assert "support" not in names and "__init__" not in names
    order = [n for n in ("kill9", "replay", "soak") if n in names]
    assert [n for n in names if n in order] == order


def test_the_table_has_a_line_per_row_and_says_when_a_scenario_printed_none() -> None:
    row = {
        "scenario": "kill9", "faults": 12, "operations": 20310, "lost": 0, "duplicated": 0,
        "recover_s": 14.25, "detail": "recovered: kafka 14.2s",
    }  # fmt: skip
    text = _runner().table(
        [
            {"scenario": "kill9", "exit": 0, "rows": [row]},
            {"scenario": "replay", "exit": 1, "rows": []},
        ]
    )
    lines = text.splitlines()
    assert lines[0].split()[:6] == [
        "scenario",
        "faults",
        "operations",
        "lost",
        "duplicated",
        "recover",
    ]
    kill9 = next(line for line in lines if line.startswith("kill9"))
    assert kill9.split()[:6] == ["kill9", "12", "20310", "0", "0", "14.2"]
    assert "no row printed" in next(line for line in lines if line.startswith("replay"))


def test_an_unknown_scenario_is_one_clear_line() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--only", "nosuch"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("chaos: no scenario named nosuch")
    assert "Traceback" not in done.stderr
