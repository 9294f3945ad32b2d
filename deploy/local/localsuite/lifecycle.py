"""start / stop / status of the engines and the services under supervisord."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shlex
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .common import EngineError, first_error_line, log, timed
from .configs import SUPERVISED_MARKER, ensure_admin_credential, format_kafka, write_configs
from .fetch import ferretdb_current, fetch, kafka_libs_current
from .layout import ROOT, SERVICES_FILE, Layout
from .ports import cmdline, require_free
from .prerequisites import require_java
from .probes import http_ready, kafka_ready, mongodb_ready
from .services import Service, load_services, load_setup
from .supervisor import Supervisor


@dataclass
class Target:
    """Something start waits for."""

    name: str  # the supervisord program
    label: str
    ready: Callable[[], bool]


def engine_targets(layout: Layout) -> list[Target]:
    return [
        Target(
            "kafka", f"Kafka on {layout.kafka_bootstrap}", lambda: kafka_ready(layout.kafka_port)
        ),
        Target(
            "ferretdb",
            f"FerretDB on {layout.mongodb_uri}",
            lambda: mongodb_ready(layout.mongodb_port),
        ),
    ]


def _http_probe(url: str) -> Callable[[], bool]:
    return lambda: http_ready(url)


def service_targets(services: list[Service]) -> list[Target]:
    targets = []
    for service in services:
        url = service.health
        if url:
            label = f"{service.name} ({url})"
            targets.append(Target(service.name, label, _http_probe(url)))
        else:
            targets.append(Target(service.name, service.name, lambda: True))
    return targets


def wait_for(sup: Supervisor, targets: list[Target], deadline: float) -> None:
    pending = list(targets)
    while pending:
        pending = [target for target in pending if not target.ready()]
        if not pending:
            return
        try:
            infos = sup.processes()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise EngineError(
                f"supervisord stopped answering ({exc}); log: {sup.layout.logs / 'supervisord.log'}"
            ) from exc
        for target in pending:
            state = str(infos.get(target.name, {}).get("statename", "UNKNOWN"))
            # FATAL: supervisord gave up after startretries; STOPPED: someone stopped it.
            if state in {"FATAL", "STOPPED"}:
                raise EngineError(
                    f"{target.label} did not come up (supervisord state {state}): "
                    f"read {sup.layout.logs / (target.name + '.log')}"
                )
        if time.monotonic() > deadline:
            target = pending[0]
            state = str(infos.get(target.name, {}).get("statename", "UNKNOWN"))
            others = ", ".join(t.name for t in pending[1:])
            others = f" (also waiting for {others})" if others else ""
            raise EngineError(
                f"{target.label} did not come up in time (supervisord state {state}){others}: "
                f"read {sup.layout.logs / (target.name + '.log')}"
            )
        time.sleep(0.25)


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    """One engines.py at a time per ZC_LOCAL_HOME (parallel test sessions start it too)."""
    layout.run.mkdir(parents=True, exist_ok=True)
    with (layout.run / "engines.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start(layout: Layout, *, engines_only: bool, if_needed: bool, timeout: float) -> list[Service]:
    services = [] if engines_only else load_services()
    wanted = engine_targets(layout) + service_targets(services)
    if if_needed and all(target.ready() for target in wanted):
        log(f"already running: kafka {layout.kafka_bootstrap}, mongodb {layout.mongodb_uri}")
        return services
    java = require_java()
    with locked(layout):
        if not kafka_libs_current(layout) or not ferretdb_current(layout):
            fetch(layout)
        sup = Supervisor(layout)
        supervisord_pid = sup.pid()
        launched_here = supervisord_pid is None
        if supervisord_pid is not None:
            ours = sup.processes()
            if all(
                ours.get(t.name, {}).get("statename") == "RUNNING" and t.ready() for t in wanted
            ):
                log(f"already running under supervisord pid {supervisord_pid}")
                return services
            write_configs(layout, java, services)
            sup.ctl("update")  # picks up added/changed programs
        else:
            if stray := leftovers(layout):
                log(f"stopping {len(stray)} processes left behind by a killed supervisord")
                shutdown(layout, quiet=True)
            for variable, port in layout.engine_ports.items():
                require_free(port, variable)
            for service in services:
                if service.port:
                    require_free(service.port, f"the port of {service.name} in {SERVICES_FILE}")
            write_configs(layout, java, services)
            format_kafka(layout, java)
            with timed(f"supervisord: starting kafka and ferretdb (logs in {layout.logs})"):
                sup.launch()
        # The timeout covers coming up, not a first fetch (a cold FerretDB build alone takes ~70 s).
        deadline = time.monotonic() + timeout
        try:
            for name in ("kafka", "ferretdb"):
                sup.start_process(name)
            with timed("waiting until Kafka answers a Metadata request and FerretDB a ping"):
                wait_for(sup, engine_targets(layout), deadline)
            ensure_admin_credential(layout, java)
            if services:
                run_setup(layout)
            for service in services:
                sup.start_process(service.name)
            if services:
                with timed(f"waiting for {len(services)} services' health URLs"):
                    wait_for(sup, service_targets(services), deadline)
        except EngineError:
            if launched_here:  # a failed start leaves no process behind, only its logs
                with contextlib.suppress(EngineError):
                    shutdown(layout, quiet=True)
            raise
    log(f"started: kafka {layout.kafka_bootstrap}, mongodb {layout.mongodb_uri}")
    return services


def run_setup(layout: Layout) -> None:
    """Run the setup commands of services.toml against the engines; stop on the first failure."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": layout.kafka_bootstrap,
        "MONGODB_URI": layout.mongodb_uri,
    }
    for command in load_setup():
        with timed("setup: " + " ".join(shlex.quote(part) for part in command[1:])):
            out = subprocess.run(
                command, capture_output=True, text=True, env=env, cwd=ROOT, check=False
            )
        if out.returncode != 0:
            raise EngineError(
                f"setup command {shlex.join(command)} failed: {first_error_line(out.stdout + out.stderr)}"
            )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 0)
            return True
        return False
    return state != "Z"


def leftovers(layout: Layout) -> list[int]:
    """Programs of this ZC_LOCAL_HOME whose supervisord is gone (e.g. killed with SIGKILL)."""
    marker = f"{SUPERVISED_MARKER}={layout.home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (proc / "environ").read_bytes().split(b"\x00"):
                    found.append(int(proc.name))
    return found


def stop(layout: Layout) -> None:
    started = time.monotonic()
    with locked(layout):
        shutdown(layout)
    log(f"stopped in {time.monotonic() - started:.1f} s")


def shutdown(layout: Layout, *, quiet: bool = False) -> None:
    """Shut supervisord down and wait until it and every program it ran are gone."""
    say: Callable[[str], None] = (lambda _message: None) if quiet else log
    sup = Supervisor(layout)
    supervisord_pid = sup.pid()
    pids: list[int] = []
    if supervisord_pid is None:
        say(f"supervisord is not running for {layout.home}")
    else:
        pids = [supervisord_pid] + [
            int(cast(int, info["pid"])) for info in sup.processes().values() if info.get("pid")
        ]
        out = sup.ctl("shutdown")
        say(out.stdout.strip() or out.stderr.strip())
    # supervisord SIGKILLs a program group after its stopwaitsecs (30 s for Kafka).
    deadline = time.monotonic() + 45
    _wait_gone(pids, deadline)
    stray = leftovers(layout)
    for pid in stray:
        say(f"terminating leftover process {pid} ({cmdline(pid)})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    alive = _wait_gone(pids + stray, deadline)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if alive:
        raise EngineError(f"processes {alive} did not stop within 45 s and were killed")


def _wait_gone(pids: list[int], deadline: float) -> list[int]:
    """Wait until none of ``pids`` is alive or the deadline passes; returns the living."""
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def status(layout: Layout) -> int:
    sup = Supervisor(layout)
    if sup.pid() is None:
        log(f"not running (no supervisord answers on {layout.socket})")
        return 3
    out = sup.ctl("status")
    log(out.stdout.rstrip())
    return out.returncode
