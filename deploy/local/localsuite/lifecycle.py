"""start / stop / status of the engines and the services under supervisord."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shlex
import shutil
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
from .fetch import (
    GO_PROGRAMS,
    ferretdb_current,
    fetch,
    fetch_observability,
    go_program_current,
    kafka_libs_current,
)
from .layout import ROOT, SERVICES_FILE, Layout
from .ports import cmdline, require_free
from .prerequisites import require_java
from .probes import http_ready, kafka_ready, mongodb_ready, otlp_http_ready
from .services import Service, expand, load_services, load_setup
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


def observability_targets(layout: Layout) -> list[Target]:
    """Jaeger: its query API and its OTLP/HTTP receiver answer; Prometheus: ``/-/ready``."""
    return [
        Target(
            "jaeger",
            f"Jaeger on {layout.jaeger_url} (OTLP {layout.otlp_endpoint})",
            lambda: (
                http_ready(f"{layout.jaeger_url}/api/services")
                and otlp_http_ready(layout.otlp_http_endpoint)
            ),
        ),
        Target(
            "prometheus",
            f"Prometheus on {layout.prometheus_url}",
            lambda: http_ready(f"{layout.prometheus_url}/-/ready"),
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


def start(
    layout: Layout,
    *,
    engines_only: bool,
    if_needed: bool,
    timeout: float,
    observability: bool | None = None,
    observability_only: bool = False,
) -> list[Service]:
    """Start what is asked for under this cache's supervisord and wait until it answers.

    Kafka and FerretDB always (unless ``observability_only``); Jaeger and Prometheus unless
    ``engines_only`` (``observability=True`` adds them to it); the services unless either.
    """
    core = not observability_only
    with_observability = observability_only or (
        observability if observability is not None else not engines_only
    )
    services = [] if engines_only or observability_only else load_services()
    core_targets = engine_targets(layout) if core else []
    obs_targets = observability_targets(layout) if with_observability else []
    engines = core_targets + obs_targets
    wanted = engines + service_targets(services)
    if if_needed and all(target.ready() for target in wanted):
        log(f"already running: {_summary(layout, core, with_observability)}")
        return services
    java = require_java() if core else (shutil.which("java") or "java")
    with locked(layout):
        if core and (not kafka_libs_current(layout) or not ferretdb_current(layout)):
            fetch(layout, observability=False)
        if with_observability and not all(go_program_current(layout, p) for p in GO_PROGRAMS):
            fetch_observability(layout)
        sup = Supervisor(layout)
        supervisord_pid = sup.pid()
        launched_here = supervisord_pid is None
        ports = {
            variable: port
            for target in engines
            for variable, port in layout.program_ports[target.name].items()
        }
        if supervisord_pid is not None:
            ours = sup.processes()
            if all(
                ours.get(t.name, {}).get("statename") == "RUNNING" and t.ready() for t in wanted
            ):
                log(f"already running under supervisord pid {supervisord_pid}")
                return services
            # Engines it does not run yet (e.g. Jaeger next to a running Kafka) need their ports;
            # one still STARTING (within its startsecs) is ours already and holds its ports.
            for target in engines:
                if ours.get(target.name, {}).get("statename") not in ("RUNNING", "STARTING"):
                    for variable, port in layout.program_ports[target.name].items():
                        require_free(port, variable)
            # Services configured by an earlier start stay configured (update would remove them).
            asked = {service.name for service in services}
            kept = [s for s in load_services() if s.name in ours and s.name not in asked]
            write_configs(layout, java, services + kept)
            sup.ctl("update")  # picks up added/changed programs
            # update stops a program whose configuration changed and starts it again only if
            # it autostarts (none does): what ran before (the engines another session uses,
            # say, when only Jaeger and Prometheus were asked for) must not be left stopped.
            after = sup.processes()
            for name, info in ours.items():
                if info.get("statename") == "RUNNING" and name in after:
                    sup.start_process(name)
        else:
            if stray := leftovers(layout):
                log(f"stopping {len(stray)} processes left behind by a killed supervisord")
                shutdown(layout, quiet=True)
            for variable, port in ports.items():
                require_free(port, variable)
            for service in services:
                if service.port:
                    require_free(service.port, f"the port of {service.name} in {SERVICES_FILE}")
            write_configs(layout, java, services)
            if core:
                format_kafka(layout, java)
            with timed(
                f"supervisord: starting {', '.join(t.name for t in engines)} (logs in {layout.logs})"
            ):
                sup.launch()
        # The timeout covers coming up, not a first fetch (a cold FerretDB build alone takes ~70 s).
        deadline = time.monotonic() + timeout
        try:
            for target in engines:
                sup.start_process(target.name)
            if core_targets:
                with timed("waiting until Kafka answers a Metadata request and FerretDB a ping"):
                    wait_for(sup, core_targets, deadline)
            if obs_targets:
                with timed(
                    "waiting until Jaeger's query API and OTLP receiver and Prometheus answer"
                ):
                    wait_for(sup, obs_targets, deadline)
            if core:
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
    log(f"started: {_summary(layout, core, with_observability)}")
    return services


def _summary(layout: Layout, core: bool, observability: bool) -> str:
    parts = [f"kafka {layout.kafka_bootstrap}", f"mongodb {layout.mongodb_uri}"] if core else []
    if observability:
        parts += [
            f"jaeger {layout.jaeger_url}",
            f"otlp {layout.otlp_endpoint}",
            f"prometheus {layout.prometheus_url}",
        ]
    return ", ".join(parts)


def run_setup(layout: Layout) -> None:
    """Run the setup commands of services.toml against the engines; stop on the first failure."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": layout.kafka_bootstrap,
        "MONGODB_URI": layout.mongodb_uri,
    }
    for command in ([expand(part, layout) for part in setup] for setup in load_setup()):
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


def stop(layout: Layout, *, only: list[str] | None = None) -> None:
    """Stop everything; with ``only``, just those programs (supervisord too if nothing else runs)."""
    started = time.monotonic()
    with locked(layout):
        if only is None:
            shutdown(layout)
        else:
            stop_programs(layout, only)
    log(f"stopped in {time.monotonic() - started:.1f} s")


def stop_programs(layout: Layout, names: list[str]) -> None:
    sup = Supervisor(layout)
    if sup.pid() is None:
        log(f"supervisord is not running for {layout.home}")
        return
    stopping = []
    for name in names:
        # Without waiting: a program may take longer to stop (its stopwaitsecs, up to 30 s)
        # than one XML-RPC call may (10 s); all of them stop at once and are awaited below.
        try:
            sup.rpc().supervisor.stopProcess(name, False)
        except xmlrpc.client.Fault as fault:
            # NOT_RUNNING (70) and BAD_NAME (10: never configured here) leave nothing to stop.
            if fault.faultCode not in (10, 70):
                raise EngineError(
                    f"supervisord could not stop {name} ({fault.faultString})"
                ) from None
        else:
            stopping.append(name)
    done = {"STOPPED", "EXITED", "FATAL"}
    deadline = time.monotonic() + 45  # supervisord SIGKILLs a program after its stopwaitsecs
    while stopping:
        infos = sup.processes()
        for name in [n for n in stopping if str(infos.get(n, {}).get("statename")) in done]:
            stopping.remove(name)
            log(f"{name}: stopped")
        if stopping and time.monotonic() > deadline:
            raise EngineError(f"{', '.join(stopping)} did not stop within 45 s")
        time.sleep(0.1)
    states = {str(info.get("statename")) for info in sup.processes().values()}
    if not states - done:
        shutdown(layout, quiet=True)


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
