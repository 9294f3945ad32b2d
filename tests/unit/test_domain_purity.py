"""Every domain layer imports without an I/O library: checked at run time, in a fresh interpreter.

The import-linter contract ``domain-without-io`` (pyproject.toml) checks the import graph
statically; this test runs the imports, so it also sees what the graph cannot (an ``__init__``
that imports eagerly, ``importlib`` calls). Domain modules are found by walking the members'
``src/`` folders for ``domain`` packages (each submodule too) and ``domain.py`` modules, so a new one is covered
without editing this file. One subprocess imports them all, one at a time, each starting from
the modules that were loaded before it (only the interpreter's own), and reports what each pulled
in; pytest then has one result per domain module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The I/O libraries of the import-linter contract domain-without-io.
FORBIDDEN = ("fastapi", "starlette", "pymongo", "bson", "motor", "aiokafka", "grpc", "faust")
FORBIDDEN += ("httpx", "aiohttp")


def domain_modules() -> list[str]:
    """``….domain`` modules and packages, and their submodules, in every member's ``src/``."""
    found: set[str] = set()
    for src in sorted(ROOT.glob("*/*/src")):
        for path in src.rglob("*.py"):
            parts = path.relative_to(src).with_suffix("").parts
            if "domain" in parts[:-1] or parts[-1] == "domain":  # in a domain package, or one
                found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(found)


# Each module is imported in its own child of one parent process: the parent imports nothing but
# the standard library, forks, and the child imports the module and reports the top-level names
# of what is in sys.modules afterwards. (A fork is much cheaper than a new interpreter per module.)
_PROBE = """
import json, os, sys
modules, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
for name in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(name)
            report = {"loaded": sorted({m.split(".")[0] for m in sys.modules} & set(forbidden))}
        except BaseException as error:
            report = {"error": f"{type(error).__name__}: {error}"}
        with os.fdopen(write, "w") as out:
            json.dump(report, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        results[name] = json.loads(answer.read() or '{"error": "no answer"}')
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def imported() -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [
            sys.executable,
            "-I",  # no user site, no PYTHON* variables; the venv's .pth files still apply
            "-c",
            _PROBE,
            json.dumps(domain_modules()),
            json.dumps(FORBIDDEN),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    results: dict[str, dict[str, object]] = json.loads(done.stdout)
    return results


def test_the_domain_modules_are_found() -> None:
    # A floor, not the list: the test must not pass by finding nothing.
    assert {
        "zerocontact.identity.domain",
        "zerocontact.identity.trust.domain",
        "zerocontact.loan.domain",
        "zerocontact.payroll.domain",
        "zerocontact.marketing.domain",
        "zerocontact.skeleton.domain",
    } <= set(domain_modules())


@pytest.mark.parametrize("module", domain_modules())
def test_domain_module_imports_no_io_library(
    module: str, imported: dict[str, dict[str, object]]
) -> None:
    result = imported[module]
    assert "error" not in result, f"{module} does not import: {result['error']}"
    assert result["loaded"] == [], f"importing {module} loads {result['loaded']}"
