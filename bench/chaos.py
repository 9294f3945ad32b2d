"""Run the reliability and security scenarios of tests/chaos/ and print their table.

Each scenario is a module, ``tests/chaos/<name>.py``, that takes ``--quick`` (the other modules
there are helpers), run as ``python -m tests.chaos.<name> [--quick]`` in a subprocess, in a fixed order, on the engines of ``KAFKA_BOOTSTRAP_SERVERS`` /
``MONGODB_URI`` (when unset, the embedded ones are started with ``deploy/local/engines.py start
--engines-only --if-needed`` and stopped afterwards if this run started them). A scenario
prints one ``CHAOS-ROW {json}`` line per row it measured and exits non-zero when an invariant
failed; its other output goes straight through. The table follows (faults injected,
operations, lost, duplicated, time to recover), then one JSON line. Exit status: 0 when every
scenario passed and every row has 0 lost and 0 duplicated.

    .venv/bin/python bench/chaos.py [--quick] [--only kill9,replay] [--list]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS_DIR = ROOT / "tests" / "chaos"
ENGINES = ROOT / "deploy" / "local" / "engines.py"
# The order; scenarios not listed here run after them, by name.
ORDER = ("kill9", "outbox_crash", "replay", "poison", "faust_state", "soak")
TIMEOUT_S = {"quick": 900, "full": 5400}
ROW_PREFIX = "CHAOS-ROW "


def scenarios() -> list[str]:
    """Every scenario module under tests/chaos/, in the fixed order: a module is a scenario
    when it takes ``--quick`` (the contract every scenario follows); the others there are
    helpers (support, restarters, fuzzing targets)."""
    names = {
        path.stem
        for path in SCENARIOS_DIR.glob("*.py")
        if not path.stem.startswith("_") and '"--quick"' in path.read_text(encoding="utf-8")
    }
    rank = {name: n for n, name in enumerate(ORDER)}
    return sorted(names, key=lambda name: (rank.get(name, len(ORDER)), name))


def start_engines(env: dict[str, str]) -> bool:
    """Start the embedded engines if needed; True when this call started them."""
    started = subprocess.run(
        [sys.executable, str(ENGINES), "start", "--engines-only", "--if-needed"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if started.returncode != 0:
        sys.exit(f"chaos: embedded engines did not start: {started.stderr.strip()}")
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{os.environ.get('ZC_KAFKA_PORT', 9092)}"
    env["MONGODB_URI"] = f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', 27017)}/"
    return "started" in started.stdout


def run_one(name: str, quick: bool, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], float]:
    """Run one scenario, passing its output through; its exit status, rows and seconds."""
    command = [sys.executable, "-m", f"tests.chaos.{name}", *(["--quick"] if quick else [])]
    timeout = TIMEOUT_S["quick" if quick else "full"]
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                print(f"  {name} | {line}", end="", flush=True)
                if line.startswith(ROW_PREFIX):
                    rows.append(json.loads(line[len(ROW_PREFIX) :]))
                if time.monotonic() - began > timeout:
                    process.kill()
                    print(f"chaos: {name} killed after {timeout} s", file=sys.stderr)
            code = process.wait(timeout=max(1.0, timeout - (time.monotonic() - began)))
        except subprocess.TimeoutExpired:
            process.kill()
            code = -9
            print(f"chaos: {name} killed after {timeout} s", file=sys.stderr)
    return code, rows, time.monotonic() - began


def table(results: list[dict[str, Any]]) -> str:
    """The rows as a plain-text table (one line per row; a scenario without rows says so)."""
    header = (
        "scenario",
        "faults",
        "operations",
        "lost",
        "duplicated",
        "recover s",
        "exit",
        "detail",
    )
    lines: list[tuple[str, ...]] = []
    for result in results:
        if not result["rows"]:
            lines.append(
                (result["scenario"], "-", "-", "-", "-", "-", str(result["exit"]), "no row printed")
            )
        for row in result["rows"]:
            recover = row.get("recover_s")
            lines.append(
                (
                    row["scenario"], str(row["faults"]), str(row["operations"]), str(row["lost"]),
                    str(row["duplicated"]), "-" if recover is None else f"{recover:.1f}",
                    str(result["exit"]), row.get("detail", ""),
                )
            )  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header[:-1])]
    out = []
    for cells in [header, *lines]:
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True))
            + "  "
            + cells[-1]
        )
    out.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the smaller version of each (CI)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args()
    names = scenarios()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            print(
                f"chaos: no scenario named {', '.join(unknown)} (have: {', '.join(names)})",
                file=sys.stderr,
            )
            return 2
        names = [n for n in names if n in wanted]
    if not names:
        print("chaos: no scenario under tests/chaos/", file=sys.stderr)
        return 2
    env = dict(os.environ)
    external = bool(env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("MONGODB_URI"))
    we_started = False if external else start_engines(env)
    print(f"chaos: kafka {env['KAFKA_BOOTSTRAP_SERVERS']}, mongodb {env['MONGODB_URI']}; "
          f"{'quick' if args.quick else 'full'}: {', '.join(names)}", flush=True)  # fmt: skip
    results: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        for name in names:
            print(f"\n== {name}", flush=True)
            code, rows, took = run_one(name, args.quick, env)
            print(f"== {name}: exit {code} in {took:.0f} s", flush=True)
            results.append(
                {"scenario": name, "exit": code, "seconds": round(took, 1), "rows": rows}
            )
    finally:
        if we_started:
            subprocess.run([sys.executable, str(ENGINES), "stop"], cwd=ROOT, check=False)
    total = time.monotonic() - began
    print("\n" + table(results))
    failed = [
        r["scenario"]
        for r in results
        if r["exit"] != 0
        or not r["rows"]
        or any(row["lost"] or row["duplicated"] for row in r["rows"])
    ]
    print(
        f"chaos: {len(results)} scenarios in {total:.0f} s; failed: {', '.join(failed) or 'none'}"
    )
    print(
        json.dumps(
            {"chaos": results, "quick": args.quick, "seconds": round(total, 1), "failed": failed},
            sort_keys=True,
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
