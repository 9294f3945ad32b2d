"""Each workspace member declares what its code imports, and imports what it declares.

For every member (libs/*, services/*, clients/python) the imports in its ``src/`` are read from the syntax tree
(every ``import`` statement, in functions and under ``TYPE_CHECKING`` too: an image built from the
member's wheel alone must be able to run and type-check it). Each third-party top-level name is
mapped to its distributions with :func:`importlib.metadata.packages_distributions` (this venv has
every member installed) and compared with the member's ``[project.dependencies]``:

* an imported distribution must be declared directly: one that arrives only through another
  dependency can disappear when that dependency changes;
* a declared distribution must be imported, except the few in :data:`RUNTIME_ONLY`;
* a ``zerocontact.<x>`` import is to the member itself, to ``zerocontact.platform`` (then
  ``zerocontact-platform`` is declared), or to generated contracts ``zerocontact.<x>.v1`` (then
  ``zerocontact-contracts`` is declared).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Declared on purpose although no module of the member imports them.
RUNTIME_ONLY: dict[str, set[str]] = {
    # The HTTP services run as `python -m uvicorn --factory zerocontact.<svc>.app:create_app`
    # (docker-compose.yml, deploy/k8s, deploy/local/services.toml); the [standard] extra brings
    # uvloop, httptools and websockets for that. (The gateway imports uvicorn itself.)
    **{
        f"zerocontact-{svc}": {"uvicorn"}
        for svc in ("identity", "loan", "payroll", "marketing", "assistant", "skeleton")
    },
    # face_recognition_models ships the dlib model files (shape predictor, face encoder) that the
    # trust module locates with importlib.util.find_spec at run time, without importing it.
    "zerocontact-identity": {"uvicorn", "face-recognition-models"},
}
# PyJWT[crypto]: the `crypto` extra only adds `cryptography` (RS/ES algorithms) to PyJWT; extras
# are stripped before comparing, so PyJWT itself must be imported (`import jwt`).


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return normalise(match.group(1))


@dataclass(frozen=True)
class Member:
    folder: Path
    name: str  # normalised distribution name
    declared: frozenset[str]
    own: frozenset[str]  # second-level names under zerocontact/ in its src/

    @property
    def src(self) -> Path:
        return self.folder / "src"


def members() -> list[Member]:
    found = []
    for pyproject in sorted(ROOT.glob("*/*/pyproject.toml")):
        if pyproject.parent.parent.name not in ("libs", "services", "clients"):
            continue
        project = tomllib.loads(pyproject.read_text())["project"]
        src = pyproject.parent / "src" / "zerocontact"
        found.append(
            Member(
                folder=pyproject.parent,
                name=normalise(project["name"]),
                declared=frozenset(requirement_name(r) for r in project.get("dependencies", [])),
                own=frozenset(p.name for p in src.iterdir() if p.is_dir()),
            )
        )
    return found


@dataclass(frozen=True)
class Import:
    module: str  # full dotted name as far as the statement tells
    where: str  # path:line


def imports(member: Member) -> Iterator[Import]:
    for path in sorted(member.src.rglob("*.py")):
        tree = ast.parse(path.read_bytes(), filename=str(path))
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(alias.name, f"{where}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "zerocontact" or (
                    node.module.startswith("zerocontact.") and node.module.count(".") == 1
                ):
                    # `from zerocontact.loan import v1`: the name may be a module
                    for alias in node.names:
                        yield Import(f"{node.module}.{alias.name}", f"{where}:{node.lineno}")
                else:
                    yield Import(node.module, f"{where}:{node.lineno}")


PACKAGES = packages_distributions()


@functools.cache
def distributions_of(name: str) -> frozenset[str]:
    """The normalised names of the distributions that install top-level module ``name``.

    ``packages_distributions()`` trusts a distribution's ``top_level.txt`` where it has one, and
    some are wrong (dlib-bin's names only ``_dlib_pybind11``, not ``dlib``); for a name it does
    not know, the installed file lists (RECORD) are searched.
    """
    if name in PACKAGES:
        return frozenset(normalise(d) for d in PACKAGES[name])
    found = set()
    for dist in distributions():
        record = dist.read_text("RECORD") or ""
        if re.search(rf"^{re.escape(name)}(/|\.py,|\.[^/,]*\.so,)", record, re.MULTILINE):
            found.add(normalise(dist.metadata["Name"]))
    return frozenset(found)


STDLIB = sys.stdlib_module_names


@dataclass
class Findings:
    undeclared: list[str]
    unused: list[str]
    foreign: list[str]
    stale: list[str]  # in RUNTIME_ONLY, yet imported: the entry is no longer needed


@functools.cache
def check(member: Member) -> Findings:
    used: set[str] = set()
    undeclared, foreign = [], []
    for found in imports(member):
        parts = found.module.split(".")
        top = parts[0]
        if top == "__future__" or top in STDLIB:
            continue
        if top == "zerocontact":
            if len(parts) >= 3 and parts[2] == "v1":
                needed = "zerocontact-contracts"
            elif len(parts) < 2 or parts[1] in member.own:
                continue
            elif parts[1] == "platform":
                needed = "zerocontact-platform"
            else:
                foreign.append(f"{found.where}: {found.module} (another service)")
                continue
            if needed == member.name:
                continue
            used.add(needed)
            if needed not in member.declared:
                undeclared.append(f"{found.where}: {found.module} needs {needed}")
            continue
        dists = distributions_of(top)
        if not dists:
            undeclared.append(f"{found.where}: {found.module} (no installed distribution)")
            continue
        used |= dists
        if not dists & member.declared:
            undeclared.append(f"{found.where}: {found.module} from {' or '.join(sorted(dists))}")
    allowed = RUNTIME_ONLY.get(member.name, set())
    unused = sorted(member.declared - used - allowed)
    return Findings(undeclared, unused, foreign, stale=sorted(allowed & used))


MEMBERS = members()


def test_every_member_is_found() -> None:
    names = {member.name for member in MEMBERS}
    assert {"zerocontact-contracts", "zerocontact-platform", "zerocontact-loan"} <= names


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.name)
def test_imports_are_declared(member: Member) -> None:
    findings = check(member)
    assert not findings.undeclared, "imported, not declared:\n" + "\n".join(findings.undeclared)


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.name)
def test_declared_dependencies_are_imported(member: Member) -> None:
    findings = check(member)
    assert not findings.unused, f"declared, never imported: {findings.unused}"


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.name)
def test_only_platform_and_contracts_are_shared(member: Member) -> None:
    findings = check(member)
    assert not findings.foreign, "imports another member's code:\n" + "\n".join(findings.foreign)


def test_runtime_only_entries_are_not_imported() -> None:
    stale = {member.name: check(member).stale for member in MEMBERS if check(member).stale}
    assert not stale, f"imported after all, remove from RUNTIME_ONLY: {stale}"
