"""fetch: the Kafka broker jars from Maven Central and FerretDB built from source with Go."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

from .common import NETWORK_ERROR, EngineError, first_error_line, log, run_captured, timed
from .layout import (
    DEPENDENCY_PLUGIN,
    FERRETDB_MODULE,
    FERRETDB_PATCHES,
    FERRETDB_VERSION,
    POM,
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
        out = run_captured(
            [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"]
        )
        fetch_log.write_text(out.stdout + out.stderr)
        info: dict[str, str] = {}
        with contextlib.suppress(json.JSONDecodeError):
            info = json.loads(out.stdout)
        if out.returncode != 0 or not info.get("Dir"):
            text = out.stdout + out.stderr
            hint = "check the network or GOPROXY" if NETWORK_ERROR.search(text) else "see the log"
            raise EngineError(
                f"go could not download {FERRETDB_MODULE}@{FERRETDB_VERSION} "
                f"({info.get('Error') or first_error_line(text)}): {hint}; log: {fetch_log}"
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
    # conditional updates of one document can all apply; docs/architecture.md, decision 2.
    for patch in FERRETDB_PATCHES:
        git = require_tool("git", "needed to apply the FerretDB patches", "apt-get install git")
        out = run_captured([git, "apply", "-p1", "--whitespace=nowarn", str(patch)], cwd=src)
        if out.returncode != 0:
            raise EngineError(
                f"{patch.name} does not apply to FerretDB {FERRETDB_VERSION}: {first_error_line(out.stderr)}"
            )
        log(f"ferretdb {FERRETDB_VERSION}: applied {patch.relative_to(ROOT)}")
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


def fetch(layout: Layout) -> None:
    fetch_kafka(layout)
    fetch_ferretdb(layout)
