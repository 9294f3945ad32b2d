"""fetch: the Kafka broker jars from Maven Central; FerretDB, Jaeger and Prometheus built with Go."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .common import NETWORK_ERROR, EngineError, first_error_line, log, run_captured, timed
from .layout import (
    DEPENDENCY_PLUGIN,
    FERRETDB_MODULE,
    FERRETDB_PATCHES,
    FERRETDB_VERSION,
    JAEGER_MODULE,
    JAEGER_VERSION,
    POM,
    PROMETHEUS_MODULE,
    PROMETHEUS_VERSION,
    ROOT,
    Layout,
)
from .prerequisites import require_tool


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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
        out = run_captured(
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
            if NETWORK_ERROR.search(text):
                raise EngineError(
                    f"Maven could not reach Maven Central ({first_error_line(text)}): check the "
                    f"network or the proxy in ~/.m2/settings.xml and rerun; log: {fetch_log}"
                )
            raise EngineError(
                f"mvn could not resolve the Kafka jars ({first_error_line(text)}); log: {fetch_log}"
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
        module_dir = _go_download(go, FERRETDB_MODULE, FERRETDB_VERSION, fetch_log)
    src = layout.ferretdb_src
    shutil.rmtree(src, ignore_errors=True)
    src.parent.mkdir(parents=True, exist_ok=True)
    # The module zip lacks the generated build/version/version.txt, without which the binary
    # panics at start ("Invalid build/version/version.txt"); build from a writable copy with it.
    shutil.copytree(module_dir, src)
    for path in [src, *src.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    (src / "build" / "version" / "package.txt").write_text(ferretdb_package() + "\n")
    # Upstream runs an update as a read and a separate write (FerretDB#3040), so concurrent
    # conditional updates of one document can all apply; docs/architecture.md, decision 2.
    apply_patches(src, FERRETDB_PATCHES)
    layout.ferretdb_bin.parent.mkdir(parents=True, exist_ok=True)
    partial = layout.ferretdb_bin.with_name("ferretdb.partial")
    with timed(f"ferretdb {FERRETDB_VERSION}: go build into {layout.ferretdb_bin}"):
        out = run_captured(
            [go, "build", "-buildvcs=false", "-o", str(partial), "./cmd/ferretdb"], cwd=src
        )
        with fetch_log.open("a") as sink:
            sink.write(out.stdout + out.stderr)
        if out.returncode != 0:
            text = out.stdout + out.stderr
            hint = "check the network or GOPROXY" if NETWORK_ERROR.search(text) else "see the log"
            raise EngineError(
                f"go build of FerretDB failed ({first_error_line(text)}): {hint}; log: {fetch_log}"
            )
    partial.replace(layout.ferretdb_bin)
    if not ferretdb_current(layout):
        raise EngineError(
            f"{layout.ferretdb_bin} does not report version {FERRETDB_VERSION}; log: {fetch_log}"
        )


def apply_patches(src: Path, patches: list[Path]) -> None:
    """Apply ``patches`` (``-p1``) to the source tree ``src``, in order; raise if one does not."""
    git = require_tool("git", "needed to apply the FerretDB patches", "apt-get install git")
    for patch in patches:
        # The source tree lies inside the checkout's ignored .cache: without the ceiling, git
        # finds the checkout's repository and silently skips ("Skipped patch") a patch in git's
        # own format, whose paths it takes as relative to that repository's top.
        out = run_captured(
            [git, "apply", "-p1", "--verbose", "--whitespace=nowarn", str(patch)],
            cwd=src,
            env={"GIT_CEILING_DIRECTORIES": str(src.parent)},
        )
        skipped = [line for line in out.stderr.splitlines() if line.startswith("Skipped patch")]
        if out.returncode == 0 and skipped:
            raise EngineError(f"{patch.name} was not applied: {skipped[0]}")
        if out.returncode != 0:
            raise EngineError(
                f"{patch.name} does not apply to FerretDB {FERRETDB_VERSION}: {first_error_line(out.stderr)}"
            )
        shown = patch.relative_to(ROOT) if patch.is_relative_to(ROOT) else patch
        log(f"ferretdb {FERRETDB_VERSION}: applied {shown}")


@dataclass(frozen=True)
class GoProgram:
    """A program built from a Go module's source as the Go proxy serves it, pinned."""

    name: str  # logs/fetch-<name>.log, bin/.<name>.stamp
    module: str
    version: str
    commands: dict[str, str]  # binary name -> package inside the module
    # -X flags, by Go variable: the version the binary reports (upstream sets them the same way
    # in its release build). "{VERSION}" is replaced by the module's VERSION file.
    version_vars: dict[str, str]
    version_check: tuple[str, ...]  # arguments that make the first binary print its version
    expect: str  # in that output when the right build is in place

    def binaries(self, layout: Layout) -> list[Path]:
        return [layout.home / "bin" / name for name in self.commands]

    def stamp(self, layout: Layout) -> Path:
        return layout.home / "bin" / f".{self.name}.stamp"

    def stamp_text(self) -> str:
        flags = hashlib.sha256(repr(sorted(self.version_vars.items())).encode()).hexdigest()[:12]
        return f"{self.module}@{self.version} {' '.join(self.commands)} flags-{flags}\n"


# Jaeger v2: `go install .../cmd/jaeger@v1.75.0` fails (its go.mod has a replace directive, which
# `go install pkg@version` refuses), so both are built inside the module's source directory,
# where go.mod is the main module's and its replace directives apply.
JAEGER = GoProgram(
    name="jaeger",
    module=JAEGER_MODULE,
    version=JAEGER_VERSION,
    commands={"jaeger": "./cmd/jaeger"},
    version_vars={f"{JAEGER_MODULE}/internal/version.latestVersion": JAEGER_VERSION},
    version_check=("version",),
    expect=f'"gitVersion":"{JAEGER_VERSION}"',
)
PROMETHEUS = GoProgram(
    name="prometheus",
    module=PROMETHEUS_MODULE,
    version=PROMETHEUS_VERSION,
    commands={"prometheus": "./cmd/prometheus", "promtool": "./cmd/promtool"},
    version_vars={
        "github.com/prometheus/common/version.Version": "{VERSION}",
        "github.com/prometheus/common/version.Revision": PROMETHEUS_VERSION,
        "github.com/prometheus/common/version.BuildUser": "zerocontact",
    },
    version_check=("--version",),
    expect=f"revision: {PROMETHEUS_VERSION}",
)
GO_PROGRAMS = (JAEGER, PROMETHEUS)


def go_program_current(layout: Layout, program: GoProgram) -> bool:
    """Built before with this version and these flags (the stamp), and every binary present."""
    stamp = program.stamp(layout)
    return (
        all(binary.exists() for binary in program.binaries(layout))
        and stamp.exists()
        and stamp.read_text() == program.stamp_text()
    )


def _go_download(go: str, module: str, version: str, fetch_log: Path) -> Path:
    """``go mod download -json module@version``: the module's source folder in the Go cache."""
    out = run_captured([go, "mod", "download", "-json", f"{module}@{version}"])
    fetch_log.write_text(out.stdout + out.stderr)
    info: dict[str, str] = {}
    with contextlib.suppress(json.JSONDecodeError):
        info = json.loads(out.stdout)
    if out.returncode != 0 or not info.get("Dir"):
        text = out.stdout + out.stderr
        hint = "check the network or GOPROXY" if NETWORK_ERROR.search(text) else "see the log"
        raise EngineError(
            f"go could not download {module}@{version} "
            f"({info.get('Error') or first_error_line(text)}): {hint}; log: {fetch_log}"
        )
    return Path(info["Dir"])


def fetch_go_program(layout: Layout, program: GoProgram) -> None:
    label = f"{program.name} {program.version}"
    if go_program_current(layout, program):
        log(f"{label}: {', '.join(map(str, program.binaries(layout)))} present (stamp), skipped")
        return
    go = require_tool(
        "go",
        f"needed once to build {program.name} {program.version}",
        "install Go 1.26.7+ (https://go.dev/dl/ or apt-get install golang)",
    )
    layout.logs.mkdir(parents=True, exist_ok=True)
    fetch_log = layout.logs / f"fetch-{program.name}.log"
    with timed(f"{label}: downloading the module source"):
        src = _go_download(go, program.module, program.version, fetch_log)
    version_file = src / "VERSION"
    upstream = version_file.read_text().strip() if version_file.exists() else program.version
    ldflags = " ".join(
        f"-X {var}={value.replace('{VERSION}', upstream)}"
        for var, value in program.version_vars.items()
    )
    partial = layout.home / "bin" / f".{program.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # In the read-only module cache: -mod=readonly (also against a GOFLAGS=-mod=mod) never
    # writes go.mod/go.sum; the module's own go.sum pins every dependency. GOWORK=off: the
    # Prometheus module ships a go.work naming folders its zip does not contain.
    cmd = [go, "build", "-mod=readonly", "-buildvcs=false", f"-ldflags={ldflags}"]
    cmd += ["-o", f"{partial}/", *program.commands.values()]
    with timed(f"{label}: go build {' '.join(program.commands.values())} into {partial.parent}"):
        out = run_captured(cmd, cwd=src, env={"GOWORK": "off"})
        with fetch_log.open("a") as sink:
            sink.write(shlex.join(cmd) + "\n" + out.stdout + out.stderr)
        if out.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            text = out.stdout + out.stderr
            hint = "check the network or GOPROXY" if NETWORK_ERROR.search(text) else "see the log"
            raise EngineError(
                f"go build of {label} failed ({first_error_line(text)}): {hint}; log: {fetch_log}"
            )
    first = partial / next(iter(program.commands))
    check = run_captured([str(first), *program.version_check])
    if program.expect not in check.stdout + check.stderr:
        shutil.rmtree(partial, ignore_errors=True)
        raise EngineError(
            f"the {program.name} just built does not report {program.expect!r} "
            f"({first_error_line(check.stdout + check.stderr)}); log: {fetch_log}"
        )
    for binary in program.binaries(layout):
        (partial / binary.name).replace(binary)
    partial.rmdir()
    program.stamp(layout).write_text(program.stamp_text())


def fetch(layout: Layout, *, observability: bool = True) -> None:
    fetch_kafka(layout)
    fetch_ferretdb(layout)
    if observability:
        fetch_observability(layout)


def fetch_observability(layout: Layout) -> None:
    """Jaeger and Prometheus (with promtool)."""
    for program in GO_PROGRAMS:
        fetch_go_program(layout, program)
