"""Run every benchmark in bench/ against real engines.

Uses the engines named by ``KAFKA_BOOTSTRAP_SERVERS`` (and ``MONGODB_URI``) when set; otherwise
starts the embedded ones with ``deploy/local/engines.py start --engines-only --if-needed`` and
stops them afterwards if this run started them. Each benchmark is a script run with this
interpreter; its output goes straight through. Exit status: 0 when every benchmark passed.

    .venv/bin/python bench/run.py [name ...]     # e.g. bench/run.py kafka_roundtrip
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ENGINES = ROOT / "deploy" / "local" / "engines.py"
PER_BENCH_TIMEOUT_S = 900


def start_engines(env: dict[str, str]) -> bool:
    """Start the embedded engines if needed; True when this call started them."""
    started = subprocess.run(
        [sys.executable, str(ENGINES), "start", "--engines-only", "--if-needed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        sys.exit(f"bench: embedded engines did not start: {started.stderr.strip()}")
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{os.environ.get('ZC_KAFKA_PORT', 9092)}")
    env.setdefault(
        "MONGODB_URI", f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', 27017)}/"
    )
    return "started" in started.stdout


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted(
        path
        for path in BENCH.glob("*.py")
        if path.name not in (Path(__file__).name, "chaos.py")  # chaos.py: `make chaos`
        and not path.name.startswith("_")
        and (not wanted or path.stem in wanted)
    )
    if not scripts:
        print(f"bench: nothing to run (asked for {sorted(wanted) or 'all'})", file=sys.stderr)
        return 2
    env = dict(os.environ)
    we_started = False if env.get("KAFKA_BOOTSTRAP_SERVERS") else start_engines(env)
    print(f"bench: kafka {env['KAFKA_BOOTSTRAP_SERVERS']}, mongodb {env.get('MONGODB_URI', '-')}")
    failed = []
    try:
        for script in scripts:
            print(f"\n== {script.stem}", flush=True)
            began = time.monotonic()
            try:
                code = subprocess.run(
                    [sys.executable, str(script)], env=env, cwd=ROOT, timeout=PER_BENCH_TIMEOUT_S
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
                print(f"bench: {script.stem} killed after {PER_BENCH_TIMEOUT_S} s", file=sys.stderr)
            print(f"== {script.stem}: exit {code} in {time.monotonic() - began:.1f} s", flush=True)
            if code != 0:
                failed.append(script.stem)
    finally:
        if we_started:
            subprocess.run([sys.executable, str(ENGINES), "stop"], cwd=ROOT, check=False)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
