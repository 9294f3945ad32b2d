"""Generate Python protobuf/gRPC modules and type stubs from proto/ into libs/contracts.

Every ``proto/zerocontact/<domain>/v1/*.proto`` becomes, under
``libs/contracts/src/zerocontact/<domain>/v1/`` (the ``zerocontact-contracts`` distribution):
``*_pb2.py`` (messages), ``*_pb2.pyi`` (stubs), ``*_pb2_grpc.py`` (gRPC stubs and servicers)
and, when mypy-protobuf is installed, ``*_pb2_grpc.pyi``. ``zerocontact`` and
``zerocontact.<domain>`` are namespace packages shared with the service distributions, so
generated imports such as ``from zerocontact.common.v1 import money_pb2`` resolve as they are.

Run as ``.venv/bin/python proto/generate.py`` (``make proto``). It runs on every ``make test``,
so it is a no-op when nothing changed: a hash of the inputs (the .proto files, this script,
the grpcio-tools and protobuf versions) is kept in ``.cache/proto.stamp`` together with the
list of outputs, and generation is skipped while the hash matches and every output exists.
``--force`` regenerates regardless.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import sys
import tempfile
from importlib import metadata, resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = ROOT / "libs" / "contracts" / "src" / "zerocontact"  # zerocontact-contracts
STAMP = ROOT / ".cache" / "proto.stamp"
LOCK = ROOT / ".cache" / "proto.lock"
MYPY_PLUGIN = Path(sys.executable).parent / "protoc-gen-mypy"
MYPY_GRPC_PLUGIN = Path(sys.executable).parent / "protoc-gen-mypy_grpc"


def proto_files() -> list[Path]:
    """Every .proto under proto/zerocontact, sorted for a stable hash."""
    return sorted((PROTO_ROOT / "zerocontact").rglob("*.proto"))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def input_hash(protos: list[Path]) -> str:
    """Hash of everything the output depends on."""
    digest = hashlib.sha256()
    for dist in ("grpcio-tools", "protobuf", "mypy-protobuf"):
        digest.update(f"{dist}={_version(dist)}\n".encode())
    digest.update(Path(__file__).read_bytes())
    for proto in protos:
        digest.update(proto.relative_to(PROTO_ROOT).as_posix().encode() + b"\0")
        digest.update(proto.read_bytes() + b"\0")
    return digest.hexdigest()


def read_stamp() -> dict[str, object]:
    """The last run's stamp: {"hash": ..., "outputs": [paths relative to the root]}."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def stamped_outputs(stamp: dict[str, object]) -> list[str]:
    outputs = stamp.get("outputs")
    return [str(p) for p in outputs] if isinstance(outputs, list) else []


def is_fresh(stamp: dict[str, object], expected_hash: str) -> bool:
    """True when the stamp matches and every output it lists still exists."""
    if stamp.get("hash") != expected_hash:
        return False
    return all((ROOT / rel).is_file() for rel in stamped_outputs(stamp))


def run_protoc(protos: list[Path], out: Path) -> None:
    """Run grpc_tools' bundled protoc; well-known types come from its _proto folder."""
    # A dev dependency without type information, imported here so --help works without it.
    from grpc_tools import protoc  # type: ignore[import-untyped, unused-ignore]

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
    ]
    if MYPY_PLUGIN.exists() and MYPY_GRPC_PLUGIN.exists():
        # mypy-protobuf's stubs pass mypy --strict (protoc's --pyi_out leaves bare generics),
        # carry the proto comments as docstrings, and also type the gRPC modules.
        args += [
            f"--plugin=protoc-gen-mypy={MYPY_PLUGIN}",
            f"--plugin=protoc-gen-mypy_grpc={MYPY_GRPC_PLUGIN}",
            f"--mypy_out=quiet:{out}",
            f"--mypy_grpc_out=quiet:{out}",
        ]
    else:
        args.append(f"--pyi_out={out}")
    args += [p.relative_to(PROTO_ROOT).as_posix() for p in protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the errors above)")


def install(generated: Path) -> list[Path]:
    """Replace <contracts>/zerocontact/<domain>/v1/ with the fresh files; return the outputs."""
    outputs: list[Path] = []
    for version_dir in sorted((generated / "zerocontact").glob("*/v*")):
        domain = version_dir.parent.name
        target = PACKAGE_DIR / domain / version_dir.name
        # zerocontact.<domain> stays a namespace package (no __init__.py): the service's own
        # distribution adds its modules beside these.
        target.parent.mkdir(parents=True, exist_ok=True)
        (version_dir / "__init__.py").write_text(
            f'"""Generated from proto/zerocontact/{domain}/{version_dir.name} by proto/generate.py;'
            ' do not edit."""\n'
        )
        # Swap the folder in whole (files of a deleted .proto do not linger), by two renames
        # so that a process importing it meanwhile almost never finds it missing.
        staging = target.with_name(f".{target.name}.new")
        retired = target.with_name(f".{target.name}.old")
        for leftover in (staging, retired):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(version_dir, staging)
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
        outputs += sorted(p for p in target.rglob("*") if p.is_file())
    return outputs


def remove_stale(previous: list[str], outputs: list[Path]) -> None:
    """Delete generated version folders whose protos are all gone (only ones we generated)."""
    current = {p.parent for p in outputs}
    for folder in {(ROOT / rel).parent for rel in previous} - current:
        if folder.is_relative_to(PACKAGE_DIR) and folder.name.startswith("v"):
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args(argv)

    protos = proto_files()
    if not protos:
        print("proto: no .proto files under proto/zerocontact", file=sys.stderr)
        return 1
    expected = input_hash(protos)
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    # Several `make test` runs may start at once on a shared checkout: one generates at a time.
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = read_stamp()
        if not args.force and is_fresh(stamp, expected):
            print(f"proto: up to date ({len(protos)} files)")
            return 0
        with tempfile.TemporaryDirectory(prefix="zc-proto-") as tmp:
            run_protoc(protos, Path(tmp))
            outputs = install(Path(tmp))
        remove_stale(stamped_outputs(stamp), outputs)
        relative = [p.relative_to(ROOT).as_posix() for p in outputs]
        STAMP.write_text(json.dumps({"hash": expected, "outputs": relative}, indent=1))
    print(
        f"proto: generated {len(outputs)} files from {len(protos)} protos into libs/contracts/src/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
