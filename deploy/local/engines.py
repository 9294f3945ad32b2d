#!/usr/bin/env python3
"""Fetch, start, wait for and stop the embedded engines (Kafka, FerretDB) and the services.

Standard library only: it runs before anything else is installed. Invoke it with the
project's venv interpreter, because supervisord is looked up next to ``sys.executable``::

    .venv/bin/python deploy/local/engines.py fetch
    .venv/bin/python deploy/local/engines.py start [--engines-only] [--if-needed] [--timeout 90]
    .venv/bin/python deploy/local/engines.py up | status | stop | down

Environment: ``ZC_KAFKA_PORT`` (9092), ``ZC_KAFKA_CONTROLLER_PORT`` (9093),
``ZC_MONGODB_PORT`` (27017), ``ZC_LOCAL_HOME`` (``<repo>/.cache``). See docs/engines.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POM = HERE / "kafka" / "pom.xml"
LOG4J2 = HERE / "kafka" / "log4j2.properties"
SUPERVISORD_TEMPLATE = HERE / "supervisord.conf.template"
SERVICES_FILE = HERE / "services.toml"

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_PATCHES = sorted((HERE / "ferretdb").glob("*.patch"))
JAVA_MIN = 17
KAFKA_NODE_ID = 1
DEPENDENCY_PLUGIN = "3.8.1"


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


# ---------------------------------------------------------------------------------------------
# Layout and settings


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise EngineError(f"{name}={raw!r} is not a TCP port number: set it to 1-65535")
    return int(raw)


@dataclass(frozen=True)
class Layout:
    """Where everything lives under ZC_LOCAL_HOME, and which ports the engines use."""

    home: Path
    kafka_port: int
    controller_port: int
    mongodb_port: int

    @classmethod
    def from_env(cls) -> Layout:
        home = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache").expanduser().resolve()
        layout = cls(
            home=home,
            kafka_port=_port("ZC_KAFKA_PORT", 9092),
            controller_port=_port("ZC_KAFKA_CONTROLLER_PORT", 9093),
            mongodb_port=_port("ZC_MONGODB_PORT", 27017),
        )
        ports = [layout.kafka_port, layout.controller_port, layout.mongodb_port]
        if len(set(ports)) != len(ports):
            raise EngineError(
                "ZC_KAFKA_PORT, ZC_KAFKA_CONTROLLER_PORT and ZC_MONGODB_PORT must differ"
            )
        return layout

    @property
    def kafka_libs(self) -> Path:
        return self.home / "kafka" / "libs"

    @property
    def kafka_stamp(self) -> Path:
        return self.home / "kafka" / "libs" / ".zc-stamp"

    @property
    def ferretdb_bin(self) -> Path:
        return self.home / "bin" / "ferretdb"

    @property
    def ferretdb_src(self) -> Path:
        return self.home / "src" / f"ferretdb-{FERRETDB_VERSION}"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def kafka_data(self) -> Path:
        return self.home / "data" / "kafka"

    @property
    def ferretdb_data(self) -> Path:
        return self.home / "data" / "ferretdb"

    @property
    def ferretdb_state(self) -> Path:
        return self.home / "state" / "ferretdb"

    @property
    def supervisord_conf(self) -> Path:
        return self.home / "run" / "supervisord.conf"

    @property
    def supervisord_pidfile(self) -> Path:
        return self.home / "run" / "supervisord.pid"

    @property
    def server_properties(self) -> Path:
        return self.home / "run" / "kafka" / "server.properties"

    @property
    def socket(self) -> Path:
        sock = self.run / "supervisor.sock"
        # AF_UNIX paths are limited to 107 bytes; a deep ZC_LOCAL_HOME falls back to /tmp.
        if len(str(sock)) > 100:
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            sock = Path("/tmp") / f"zc-supervisor-{os.getuid()}-{digest}.sock"
        return sock

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongodb_port}/"


@dataclass(frozen=True)
class Service:
    """One program from deploy/local/services.toml."""

    name: str
    command: list[str]
    port: int | None = None
    health: str | None = None
    metrics: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def load_setup() -> list[list[str]]:
    """Commands run once the engines answer and before any service starts (e.g. topics)."""
    if not SERVICES_FILE.exists():
        return []
    raw = tomllib.loads(SERVICES_FILE.read_text())
    commands = []
    for command in raw.get("setup", []):
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise EngineError(f"{SERVICES_FILE}: every setup entry must be a list of strings")
        commands.append([sys.executable, *command[1:]] if command[0] == "python" else command)
    return commands


def local_secrets(layout: Layout, names: set[str]) -> dict[str, str]:
    """Random 32-byte keys for local runs, made once and kept in the cache (mode 0600).

    Services have no default keys (a deployment without its secrets must not start); on a
    developer's machine these stand in for the Kubernetes Secret.
    """
    path = layout.run / "local-secrets.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = names - known.keys()
    if missing:
        for name in sorted(missing):
            known[name] = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    return {name: known[name] for name in names}


def load_services() -> list[Service]:
    if not SERVICES_FILE.exists():
        return []
    try:
        raw = tomllib.loads(SERVICES_FILE.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EngineError(f"{SERVICES_FILE} is not valid TOML ({exc}): fix it") from exc
    services = []
    for entry in raw.get("service", []):
        name, command = entry.get("name"), entry.get("command")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise EngineError(f"{SERVICES_FILE}: service name {name!r} must match [a-z][a-z0-9_-]*")
        if name in {"kafka", "ferretdb"}:
            raise EngineError(f"{SERVICES_FILE}: service name {name!r} is reserved for an engine")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(part, str) for part in command)
        ):
            raise EngineError(f"{SERVICES_FILE}: service {name}: command must be a list of strings")
        if command[0] == "python":
            command = [sys.executable, *command[1:]]
        env = {str(k): str(v) for k, v in entry.get("env", {}).items()}
        port, health, metrics = entry.get("port"), entry.get("health"), entry.get("metrics")
        secrets = [str(name) for name in entry.get("secrets", [])]
        services.append(Service(name, command, port, health, metrics, env, secrets))
    return services


# ---------------------------------------------------------------------------------------------
# Prerequisites


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EngineError(
            f"java not found: install a JDK {JAVA_MIN}: apt-get install openjdk-17-jdk-headless"
        )
    out = _run([java, "-version"])
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = 0
    if found:
        major = int(found.group(1))
        if major == 1 and found.group(2):  # "1.8.0_392" style
            major = int(found.group(2))
    if major < JAVA_MIN:
        raise EngineError(
            f"{java} is Java {major or 'of unknown version'}, Kafka needs {JAVA_MIN}+: "
            f"install a JDK {JAVA_MIN}: apt-get install openjdk-17-jdk-headless "
            "(and put it first on PATH)"
        )
    return java


def require_tool(name: str, why: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineError(f"{name} not found ({why}): {install}")
    return path


def supervisor_binary(name: str) -> Path:
    # Not resolved: the venv's bin/python is a symlink to the base interpreter.
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise EngineError(
            f"{name} not found next to {sys.executable}: run engines.py with the project's venv "
            "(`make venv` installs supervisor from requirements.lock)"
        )
    return path


# ---------------------------------------------------------------------------------------------
# fetch


def pom_versions() -> dict[str, str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(POM).getroot().find("m:properties", ns)
    found = {} if props is None else {el.tag.split("}")[1]: el.text or "" for el in props}
    return {"kafka": found.get("kafka.version", "?"), "log4j": found.get("log4j.version", "?")}


def kafka_stamp_text() -> str:
    versions = pom_versions()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return f"kafka={versions['kafka']} log4j={versions['log4j']} pom-sha256={digest}\n"


def kafka_libs_current(layout: Layout) -> bool:
    stamp = layout.kafka_stamp
    return stamp.exists() and stamp.read_text() == kafka_stamp_text()


_NETWORK_ERROR = re.compile(
    r"(Could not transfer|UnknownHost|Unknown host|Connection refused|timed out|"
    r"Network is unreachable|No route to host|Could not resolve|dial tcp|no such host|"
    r"TLS handshake|proxyconnect)",
    re.IGNORECASE,
)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if _NETWORK_ERROR.search(line):
            # The cause is at the end of Maven's and Go's long lines: keep the tail.
            line = re.sub(r"\s+", " ", line.split(" -> [Help")[0]).strip()
            return line if len(line) <= 160 else "..." + line[-157:]
    for line in text.splitlines():
        if "ERROR" in line:
            return re.sub(r"\s+", " ", line.replace("[ERROR]", "")).strip()[:200]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def fetch_kafka(layout: Layout) -> None:
    version = pom_versions()["kafka"]
    if kafka_libs_current(layout):
        log(f"kafka {version}: jars in {layout.kafka_libs} match the pom (stamp), skipped")
        return
    mvn = require_tool(
        "mvn",
        "needed once to download the Kafka broker jars",
        "apt-get install maven (or put Apache Maven 3.8+ on PATH)",
    )
    layout.logs.mkdir(parents=True, exist_ok=True)
    fetch_log = layout.logs / "fetch-kafka.log"
    staging = layout.kafka_libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    with timed(f"kafka {version}: resolving the broker jars from Maven Central into {staging}"):
        out = _run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(POM),
                # Pinned rather than the Maven release's default (2.8 in Maven 3.8).
                f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN}"
                ":copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ]
        )
        text = _ANSI.sub("", out.stdout + out.stderr)
        fetch_log.write_text(text)
        if out.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            if _NETWORK_ERROR.search(text):
                raise EngineError(
                    f"Maven could not reach Maven Central ({_first_error_line(text)}): check the "
                    f"network or the proxy in ~/.m2/settings.xml and rerun; log: {fetch_log}"
                )
            raise EngineError(
                f"mvn could not resolve the Kafka jars ({_first_error_line(text)}); "
                f"log: {fetch_log}"
            )
    if not any(staging.glob("kafka_2.13-*.jar")):
        raise EngineError(f"mvn finished but {staging} has no kafka_2.13 jar; log: {fetch_log}")
    (staging / ".zc-stamp").write_text(kafka_stamp_text())
    shutil.rmtree(layout.kafka_libs, ignore_errors=True)
    staging.rename(layout.kafka_libs)
    jars = len(list(layout.kafka_libs.glob("*.jar")))
    log(f"kafka {version}: {jars} jars in {layout.kafka_libs}")


def ferretdb_current(layout: Layout) -> bool:
    binary = layout.ferretdb_bin
    if not binary.exists():
        return False
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return (
        f"version: {FERRETDB_VERSION}" in out.stdout
        and f"package: {ferretdb_package()}" in out.stdout
    )


def ferretdb_package() -> str:
    """The build's package label: names the patches applied, so a changed patch rebuilds."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in FERRETDB_PATCHES)).hexdigest()[:12]
    return f"zerocontact-{digest}"


def fetch_ferretdb(layout: Layout) -> None:
    if ferretdb_current(layout):
        log(f"ferretdb {FERRETDB_VERSION}: {layout.ferretdb_bin} present, skipped")
        return
    go = require_tool(
        "go",
        f"needed once to build FerretDB {FERRETDB_VERSION}",
        "install Go 1.24+ (https://go.dev/dl/ or apt-get install golang)",
    )
    layout.logs.mkdir(parents=True, exist_ok=True)
    fetch_log = layout.logs / "fetch-ferretdb.log"
    with timed(f"ferretdb {FERRETDB_VERSION}: downloading the module source"):
        out = _run([go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"])
        fetch_log.write_text(out.stdout + out.stderr)
        info: dict[str, str] = {}
        with contextlib.suppress(json.JSONDecodeError):
            info = json.loads(out.stdout)
        if out.returncode != 0 or not info.get("Dir"):
            text = out.stdout + out.stderr
            hint = "check the network or GOPROXY" if _NETWORK_ERROR.search(text) else "see the log"
            raise EngineError(
                f"go could not download {FERRETDB_MODULE}@{FERRETDB_VERSION} "
                f"({info.get('Error') or _first_error_line(text)}): {hint}; log: {fetch_log}"
            )
    src = layout.ferretdb_src
    shutil.rmtree(src, ignore_errors=True)
    src.parent.mkdir(parents=True, exist_ok=True)
    # The module zip lacks the generated build/version/version.txt, without which the binary
    # panics at start ("Invalid build/version/version.txt"); build from a writable copy with it.
    shutil.copytree(info["Dir"], src)
    for path in [src, *src.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    (src / "build" / "version" / "package.txt").write_text(ferretdb_package() + "\n")
    # Upstream runs an update as a read and a separate write (FerretDB#3040), so concurrent
    # conditional updates of one document can all apply; docs/decisions.md #2.
    for patch in FERRETDB_PATCHES:
        git = require_tool("git", "needed to apply the FerretDB patches", "apt-get install git")
        out = _run([git, "apply", "-p1", "--whitespace=nowarn", str(patch)], cwd=src)
        if out.returncode != 0:
            raise EngineError(
                f"{patch.name} does not apply to FerretDB {FERRETDB_VERSION}: {_first_error_line(out.stderr)}"
            )
        log(f"ferretdb {FERRETDB_VERSION}: applied {patch.relative_to(ROOT)}")
    layout.ferretdb_bin.parent.mkdir(parents=True, exist_ok=True)
    partial = layout.ferretdb_bin.with_name("ferretdb.partial")
    with timed(f"ferretdb {FERRETDB_VERSION}: go build into {layout.ferretdb_bin}"):
        out = _run([go, "build", "-buildvcs=false", "-o", str(partial), "./cmd/ferretdb"], cwd=src)
        with fetch_log.open("a") as sink:
            sink.write(out.stdout + out.stderr)
        if out.returncode != 0:
            text = out.stdout + out.stderr
            hint = "check the network or GOPROXY" if _NETWORK_ERROR.search(text) else "see the log"
            raise EngineError(
                f"go build of FerretDB failed ({_first_error_line(text)}): {hint}; log: {fetch_log}"
            )
    partial.replace(layout.ferretdb_bin)
    if not ferretdb_current(layout):
        raise EngineError(
            f"{layout.ferretdb_bin} does not report version {FERRETDB_VERSION}; log: {fetch_log}"
        )


def fetch(layout: Layout) -> None:
    fetch_kafka(layout)
    fetch_ferretdb(layout)


# ---------------------------------------------------------------------------------------------
# Readiness probes (real protocol requests: a TCP connect succeeds before the broker is ready)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _kafka_request(port: int, api_key: int, version: int, body: bytes) -> bytes:
    client_id = b"zc-engines"
    header = struct.pack(">hhih", api_key, version, 1, len(client_id)) + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    (correlation,) = struct.unpack_from(">i", payload)
    if correlation != 1:
        raise ConnectionError("unexpected correlation id")
    return payload[4:]


def kafka_brokers(port: int) -> int:
    """Brokers listed by a Metadata v4 request (answered by Kafka 1.0 to 4.x alike)."""
    body = struct.pack(">i?", -1, False)  # all topics, no auto-creation
    resp = _kafka_request(port, api_key=3, version=4, body=body)
    _throttle, count = struct.unpack_from(">ii", resp)
    return int(count)


def kafka_ready(port: int) -> bool:
    try:
        return kafka_brokers(port) >= 1
    except (OSError, ConnectionError, struct.error):
        return False


def _bson_ping() -> bytes:
    elements = b"\x10ping\x00" + struct.pack("<i", 1)
    elements += b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"


def _bson_ok(doc: bytes) -> bool:
    """Read the top-level ``ok`` field of a BSON document (only the types a reply uses)."""
    pos, end = 4, struct.unpack_from("<i", doc)[0] - 1
    fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : name_end]
        pos = name_end + 1
        if name == b"ok":
            if kind == 0x01:
                return bool(struct.unpack_from("<d", doc, pos)[0] == 1.0)
            if kind in (0x10, 0x12):
                return bool(struct.unpack_from("<i" if kind == 0x10 else "<q", doc, pos)[0] == 1)
            return False
        if kind in fixed:
            pos += fixed[kind]
        elif kind in (0x02, 0x0D, 0x0E):  # string-like: int32 length + bytes
            pos += 4 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in (0x03, 0x04):  # embedded document / array
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary: length + subtype + bytes
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        else:
            return False
    return False


def mongodb_ready(port: int) -> bool:
    """An OP_MSG ``ping`` on the admin database answered with ok: 1."""
    doc = _bson_ping()
    body = struct.pack("<I", 0) + b"\x00" + doc
    header = struct.pack("<iiii", 16 + len(body), 1, 0, 2013)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(header + body)
            (size,) = struct.unpack("<i", _recv_exact(sock, 4))
            reply = _recv_exact(sock, size - 4)
        _req, response_to, opcode, _flags, kind = struct.unpack_from("<iiiIB", reply)
        if response_to != 1 or opcode != 2013 or kind != 0:
            return False
        return _bson_ok(reply[17:])
    except (OSError, ConnectionError, struct.error, ValueError, IndexError):
        return False


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


# ---------------------------------------------------------------------------------------------
# Ports


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM and Go: SO_REUSEADDR, so a just-closed socket in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\x00", b" ").decode(errors="replace").strip()
    return text if len(text) <= 90 else text[:87] + "..."


def port_owner(port: int) -> int | None:
    """The pid listening on ``port`` (Linux /proc), or None when it cannot be seen."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def require_free(port: int, env_name: str) -> None:
    if port_free(port):
        return
    pid = port_owner(port)
    who = f"pid {pid} ({_cmdline(pid)})" if pid else "another process"
    raise EngineError(f"port {port} is in use by {who}: stop it or set {env_name}")


# ---------------------------------------------------------------------------------------------
# supervisord


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)


class Supervisor:
    """The supervisord of one ZC_LOCAL_HOME, over its XML-RPC unix socket."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def rpc(self) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(str(self.layout.socket))
        )

    def pid(self) -> int | None:
        """supervisord's pid when it answers on our socket, else None."""
        if not self.layout.socket.exists():
            return None
        try:
            return int(cast(int, self.rpc().supervisor.getPID()))
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None

    def processes(self) -> dict[str, dict[str, object]]:
        infos = cast(list[dict[str, object]], self.rpc().supervisor.getAllProcessInfo())
        return {str(info["name"]): info for info in infos}

    def start_process(self, name: str) -> None:
        try:
            self.rpc().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != 60:  # ALREADY_STARTED
                raise EngineError(
                    f"supervisord could not start {name} ({fault.faultString}): "
                    f"read {self.layout.logs / (name + '.log')}"
                ) from None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl = supervisor_binary("supervisorctl")
        return _run([str(ctl), "-c", str(self.layout.supervisord_conf), *args])

    def launch(self) -> None:
        supervisord = supervisor_binary("supervisord")
        errors = self.layout.logs / "supervisord.start.log"
        with errors.open("w") as sink:
            # supervisord forks and its parent returns; no pipe of ours may outlive this
            # call (a caller capturing our stdout would wait for it forever).
            code = subprocess.call(
                [str(supervisord), "-c", str(self.layout.supervisord_conf)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                cwd=ROOT,
                start_new_session=True,
            )
        if code != 0:
            detail = _first_error_line(errors.read_text())
            raise EngineError(f"supervisord did not start ({detail}); log: {errors}")
        deadline = time.monotonic() + 15
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise EngineError(
                    f"supervisord did not answer on {self.layout.socket} within 15 s; "
                    f"log: {self.layout.logs / 'supervisord.log'}"
                )
            time.sleep(0.1)


def _escape(value: str) -> str:
    return value.replace("%", "%%")


def _program(name: str, command: list[str], options: dict[str, object], logs: Path) -> str:
    lines = [f"[program:{name}]", f"command={_escape(shlex.join(command))}"]
    base: dict[str, object] = {
        "stopasgroup": "true",
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": logs / f"{name}.log",
        "stdout_logfile_maxbytes": "50MB",
        "stdout_logfile_backups": 3,
    }
    for key, value in {**base, **options}.items():
        lines.append(f"{key}={_escape(str(value))}")
    return "\n".join(lines) + "\n"


SUPERVISED_MARKER = "ZC_SUPERVISED_BY"


def _environment(env: dict[str, str]) -> str:
    return ",".join(f'{key}="{value}"' for key, value in env.items())


def write_configs(layout: Layout, java: str, services: list[Service]) -> None:
    for folder in (layout.run / "kafka", layout.logs, layout.kafka_data, layout.ferretdb_data):
        folder.mkdir(parents=True, exist_ok=True)
    layout.ferretdb_state.mkdir(parents=True, exist_ok=True)
    kafka = layout.kafka_port
    ctrl = layout.controller_port
    properties = {
        "process.roles": "broker,controller",
        "node.id": KAFKA_NODE_ID,
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{ctrl}",
        "listeners": f"PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{ctrl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": layout.kafka_data,
        "num.partitions": 3,
        "offsets.topic.replication.factor": 1,
        # One dev node: 6 internal partitions instead of 50 make the first group join quick.
        "offsets.topic.num.partitions": 6,
        "transaction.state.log.num.partitions": 6,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
    }
    layout.server_properties.write_text(
        "# Generated by deploy/local/engines.py; overwritten on every start.\n"
        + "".join(f"{key}={value}\n" for key, value in properties.items())
    )
    kafka_cmd = [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp",
        f"{layout.kafka_libs}/*",
        "kafka.Kafka",
        str(layout.server_properties),
    ]
    ferretdb_cmd = [
        str(layout.ferretdb_bin),
        "--handler=sqlite",
        f"--sqlite-url=file:{layout.ferretdb_data}/",
        f"--listen-addr=127.0.0.1:{layout.mongodb_port}",
        # A bank's deployment reports nothing to vendors; "-" turns the debug HTTP listener off.
        "--telemetry=disable",
        "--debug-addr=-",
        f"--state-dir={layout.ferretdb_state}",
        "--log-format=json",
    ]
    # Every program (and its children) carries this variable, so `stop` can find them even
    # after supervisord itself was killed with SIGKILL.
    marker = {SUPERVISED_MARKER: str(layout.home)}
    programs = [
        _program(
            "kafka",
            kafka_cmd,
            # A clean broker shutdown takes a few seconds; SIGKILL only after 30 s.
            {
                "environment": _environment(marker),
                "directory": layout.run / "kafka",
                # The JVM exits 143 (128 + SIGTERM) after its shutdown hook stopped the broker.
                "exitcodes": "0,143",
                "priority": 10,
                "startsecs": 5,
                "startretries": 2,
                "stopwaitsecs": 30,
                "autorestart": "true",
            },
            layout.logs,
        ),
        _program(
            "ferretdb",
            ferretdb_cmd,
            {
                # Go's collector at its default (GOGC=100) took ~10 % of FerretDB's CPU under
                # the loan benchmark; 400 trades memory (tens of MB here) for ~13 % less CPU
                # per loan (bench/loan_310.py's CPU meter, docs/loan.md).
                "environment": _environment({**marker, "GOGC": "400"}),
                "directory": layout.ferretdb_state,
                "priority": 20,
                "startsecs": 2,
                "startretries": 2,
                "stopwaitsecs": 10,
                "autorestart": "true",
            },
            layout.logs,
        ),
    ]
    engines_env = {
        "KAFKA_BOOTSTRAP_SERVERS": layout.kafka_bootstrap,
        "MONGODB_URI": layout.mongodb_uri,
        "PYTHONUNBUFFERED": "1",
        **marker,
    }
    secrets = local_secrets(layout, {name for service in services for name in service.secrets})
    for service in services:
        own_secrets = {name: secrets[name] for name in service.secrets}
        programs.append(
            _program(
                service.name,
                service.command,
                # Started by engines.py once the engines answer, not by supervisord at boot.
                {
                    "directory": ROOT,
                    "priority": 100,
                    "autostart": "false",
                    "startsecs": 2,
                    "startretries": 3,
                    "stopwaitsecs": 15,
                    "autorestart": "true",
                    "environment": _environment({**engines_env, **service.env, **own_secrets}),
                },
                layout.logs,
            )
        )
    template = string.Template(SUPERVISORD_TEMPLATE.read_text())
    layout.supervisord_conf.write_text(
        template.substitute(
            socket=_escape(str(layout.socket)),
            logs=_escape(str(layout.logs)),
            run=_escape(str(layout.run)),
            root=_escape(str(ROOT)),
            programs="\n".join(programs),
        )
    )


def kafka_cluster_id() -> str:
    """A random Kafka cluster id, as ``StorageTool random-uuid`` makes (saves one JVM start)."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


def format_kafka(layout: Layout, java: str) -> None:
    meta = layout.kafka_data / "meta.properties"
    marker = layout.kafka_data / ".zc-controller-port"
    if meta.exists():
        formatted_for = marker.read_text().strip() if marker.exists() else None
        if formatted_for and formatted_for != str(layout.controller_port):
            raise EngineError(
                f"Kafka storage in {layout.kafka_data} was formatted for controller port "
                f"{formatted_for}: set ZC_KAFKA_CONTROLLER_PORT={formatted_for} "
                f"or delete {layout.kafka_data} (its topics are lost)"
            )
        return
    out_log = layout.logs / "kafka-format.log"
    with timed(f"kafka: formatting the KRaft storage in {layout.kafka_data}"):
        out = _run(
            [
                java,
                f"-Dlog4j2.configurationFile={LOG4J2}",
                "-cp",
                f"{layout.kafka_libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                kafka_cluster_id(),
                "-c",
                str(layout.server_properties),
                "--standalone",
            ]
        )
        out_log.write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise EngineError(
                f"kafka storage format failed ({_first_error_line(out.stdout + out.stderr)}); "
                f"log: {out_log}"
            )
    marker.write_text(f"{layout.controller_port}\n")


# ---------------------------------------------------------------------------------------------
# start / stop / status


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


def endpoints(layout: Layout, services: list[Service]) -> list[tuple[str, str, str]]:
    rows = [
        ("kafka", f"{layout.kafka_bootstrap}", "KAFKA_BOOTSTRAP_SERVERS"),
        ("mongodb (ferretdb)", layout.mongodb_uri, "MONGODB_URI"),
    ]
    for service in services:
        where = f"http://127.0.0.1:{service.port}" if service.port else "-"
        rows.append((service.name, where, f"health {service.health or '-'}"))
        if service.metrics:
            rows.append((f"{service.name} metrics", service.metrics, "prometheus"))
    return rows


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
            require_free(layout.kafka_port, "ZC_KAFKA_PORT")
            require_free(layout.controller_port, "ZC_KAFKA_CONTROLLER_PORT")
            require_free(layout.mongodb_port, "ZC_MONGODB_PORT")
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
                f"setup command {shlex.join(command)} failed: {_first_error_line(out.stdout + out.stderr)}"
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
        say(f"terminating leftover process {pid} ({_cmdline(pid)})")
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


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    header = ("component", "endpoint", "notes")
    width = [max(w, len(h)) for w, h in zip(width, header, strict=True)]
    for row in [header, tuple("-" * w for w in width), *rows]:
        log("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the Kafka jars and build FerretDB into the cache")
    for name in ("start", "up"):
        sub = commands.add_parser(name, help="start under supervisord and wait until ready")
        if name == "start":
            sub.add_argument("--engines-only", action="store_true", help="Kafka and FerretDB only")
            sub.add_argument(
                "--if-needed", action="store_true", help="do nothing if the engines already answer"
            )
        sub.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    commands.add_parser("stop", help="stop supervisord and everything it runs")
    commands.add_parser("down", help="same as stop")
    commands.add_parser("status", help="supervisorctl status")
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env()
        if args.command == "fetch":
            layout.home.mkdir(parents=True, exist_ok=True)
            with locked(layout):
                fetch(layout)
        elif args.command == "start":
            start(
                layout,
                engines_only=args.engines_only,
                if_needed=args.if_needed,
                timeout=args.timeout,
            )
        elif args.command == "up":
            services = start(layout, engines_only=False, if_needed=False, timeout=args.timeout)
            print_table(endpoints(layout, services))
        elif args.command in ("stop", "down"):
            stop(layout)
        elif args.command == "status":
            return status(layout)
    except EngineError as exc:
        print(f"engines.py {args.command}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"engines.py {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
