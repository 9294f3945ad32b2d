"""One self-contained ``.proto`` text for a topic's wrapper message, for an AsyncAPI payload.

AsyncAPI's protobuf schema parser (``@asyncapi/protobuf-schema-parser``) reads a payload's
``.proto`` source from the document itself and follows no ``import`` except the bundled
``google/protobuf/*``. So the wrapper's file is inlined together with every ``zerocontact/...``
file it imports (transitively): their ``syntax``/``package``/``option``/``import`` lines are
dropped and package-qualified references (``zerocontact.common.v1.Money``) become plain names.
The text is the real source, comments included: they are the field documentation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
PROTO_ROOT: Final = ROOT / "proto"

_IMPORT: Final = re.compile(r'^import\s+(?:public\s+)?"(?P<path>[^"]+)";\s*$', re.MULTILINE)
_DROPPED: Final = re.compile(r"^(?:syntax|package|option|import)\b.*;\s*$\n?", re.MULTILINE)
_QUALIFIED: Final = re.compile(r"\bzerocontact\.[a-z][a-z0-9_]*\.v[1-9][0-9]*\.(?=[A-Z])")
_TOP_LEVEL: Final = re.compile(r"^(?:message|enum)\s+(?P<name>\w+)\s*\{", re.MULTILINE)


def proto_file(full_name: str) -> Path:
    """The ``.proto`` file (under ``proto/``) that declares the message ``full_name``.

    Found by scanning the package's folder (``zerocontact/<domain>/vN/``) for a top-level
    ``message <Name>``; ``LookupError`` when none declares it.
    """
    package, _, name = full_name.rpartition(".")
    folder = PROTO_ROOT.joinpath(*package.split("."))
    for path in sorted(folder.glob("*.proto")):
        if re.search(rf"^message\s+{re.escape(name)}\s*\{{", path.read_text(), re.MULTILINE):
            return path
    raise LookupError(f"no .proto under {folder.relative_to(ROOT)} declares message {name}")


def _closure(path: Path) -> list[Path]:
    """``path`` and every ``zerocontact/`` file it imports, transitively, in first-seen order."""
    seen: list[Path] = []
    pending = [path]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.append(current)
        for match in _IMPORT.finditer(current.read_text()):
            if match["path"].startswith("zerocontact/"):
                pending.append(PROTO_ROOT / match["path"])
    return seen


def inlined_source(full_name: str) -> str:
    """The wrapper's ``.proto`` file with its imports inlined, marked as the schema's root.

    Raises ``ValueError`` when two inlined files declare the same top-level name (the plain
    names would clash).
    """
    files = _closure(proto_file(full_name))
    package, _, root = full_name.rpartition(".")
    imports = {m["path"] for f in files for m in _IMPORT.finditer(f.read_text())}
    google = sorted(i for i in imports if not i.startswith("zerocontact/"))
    parts = ['syntax = "proto3";', f"package {package};", *[f'import "{g}";' for g in google]]
    names: dict[str, Path] = {}
    for path in files:
        body = _QUALIFIED.sub("", _DROPPED.sub("", path.read_text())).strip("\n")
        for match in _TOP_LEVEL.finditer(body):
            if match["name"] in names:
                raise ValueError(
                    f"{match['name']} is declared in {names[match['name']]} and {path}: "
                    "inlining them into one schema would clash"
                )
            names[match["name"]] = path
        relative = path.relative_to(PROTO_ROOT)
        parts.append(f"\n// ---- {relative} ----\n{body}")
    # The parser picks the message no other message references as the root; the wrapper is
    # that message, but a file may declare more than one unreferenced message, so say so.
    text = "\n".join(parts) + "\n"
    return re.sub(rf"^(message\s+{root}\s*\{{)", r"// @RootNode\n\1", text, flags=re.MULTILINE)
