"""Run every benchmark in bench/ against real engines.

Uses the engines named by ``KAFKA_BOOTSTRAP_SERVERS`` (and ``MONGODB_URI``) when set; otherwise
starts the embedded ones with ``deploy/local/engines.py start --engines-only --if-needed`` and
stops them afterwards if this run started them. Each benchmark is a script run with this
interpreter; its output goes straight through. Exit status: 0 when every benchmark passed.

It refuses to run (exit status 2, one line) while the local ``make up`` suite is up — its
supervisord runs services (for ``ZC_LOCAL_HOME`` or the default ``.cache``), or one of the
services' fixed ports in ``deploy/local/services.toml`` answers — since every figure would
then be taken beside it; ``--beside-suite`` runs anyway. ``bench/idle.py``, which measures
that suite, and ``bench/assistant_cv.py``, which tunes the assistant's understanding, run
only when named.

    .venv/bin/python bench/run.py [--beside-suite] [name ...]     # e.g. bench/run.py kafka_roundtrip
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ENGINES = ROOT / "deploy" / "local" / "engines.py"
PER_BENCH_TIMEOUT_S = 900
# Benchmarks of the running suite itself: run only when named.
# idle measures the make-up suite; assistant_cv chooses hyper-parameters (minutes, no engines).
ONLY_WHEN_NAMED = {"idle", "assistant_cv"}
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from localsuite.common import EngineError  # noqa: E402
from localsuite.layout import Layout  # noqa: E402
from localsuite.services import load_services  # noqa: E402
from localsuite.supervisor import Supervisor  # noqa: E402


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def suite_up() -> str | None:
    """Why the local suite counts as up (its supervisord runs services, or a service's fixed
    port answers), or None."""
    services = load_services()
    names = {service.name for service in services}
    homes = {Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache").resolve(), ROOT / ".cache"}
    for home in sorted(homes):
        env_home = os.environ.get("ZC_LOCAL_HOME")
        os.environ["ZC_LOCAL_HOME"] = str(home)
        try:
            supervisor = Supervisor(Layout.from_env())
            if supervisor.pid() is not None:
                running = sorted(
                    name
                    for name, info in supervisor.processes().items()
                    if name in names and info.get("statename") == "RUNNING"
                )
                if running:
                    return f"supervisord of {home} runs {', '.join(running)}"
        except (EngineError, OSError):
            pass
        finally:
            if env_home is None:
                os.environ.pop("ZC_LOCAL_HOME", None)
            else:
                os.environ["ZC_LOCAL_HOME"] = env_home
    busy = [f"{s.name} ({s.port})" for s in services if s.port and _answers(s.port)]
    return f"ports of the suite answer: {', '.join(busy)}" if busy else None


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument(
        "--beside-suite",
        action="store_true",
        help="run even while the local make up suite is up (figures taken beside it)",
    )
    args = parser.parse_args()
    wanted = set(args.names)
    timed = wanted - ONLY_WHEN_NAMED if wanted else {"all"}
    if timed and not args.beside_suite and (why := suite_up()):
        print(
            f"bench: the local suite is up ({why}): stop it (make down) or pass --beside-suite",
            file=sys.stderr,
        )
        return 2
    scripts = sorted(
        path
        for path in BENCH.glob("*.py")
        if path.name not in (Path(__file__).name, "chaos.py")  # chaos.py: `make chaos`
        and not path.name.startswith("_")
        and (path.stem in wanted if wanted else path.stem not in ONLY_WHEN_NAMED)
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
