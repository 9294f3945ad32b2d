"""Every relative link in the Markdown docs resolves to a file or folder inside this repository.

Checked: README.md, docs/**/*.md and deploy/**/README.md; inline links and images
(``[text](target)``, ``![alt](target)``) and reference definitions (``[name]: target``), outside
fenced code blocks and inline code. Links with a scheme (``https:``, ``mailto:``) and pure anchors
are skipped; an anchor or query after a path is ignored. A target outside the repository root
(``../shared/...``) fails even where it exists on this machine: a clone of the repository alone has
no such file.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]

INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
FENCE = re.compile(r"^\s{0,3}(```|~~~).*?^\s{0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("deploy/**/README.md")]
    return sorted(path for path in files if path.is_file())


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of each relative link in ``text``, code blocks and code spans blanked."""

    def blank(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))  # keeps line numbers and offsets

    text = CODE_SPAN.sub(blank, FENCE.sub(blank, text))
    links = []
    for pattern in (INLINE, REFERENCE):
        for match in pattern.finditer(text):
            target = match.group(1).strip("<>")
            if not target or target.startswith("#") or SCHEME.match(target):
                continue
            links.append((text.count("\n", 0, match.start()) + 1, target))
    return sorted(links)


def broken(markdown: Path) -> list[str]:
    problems = []
    for line, target in relative_links(markdown.read_text(encoding="utf-8")):
        path = unquote(re.split(r"[#?]", target, maxsplit=1)[0])
        if not path:
            continue
        base = ROOT if path.startswith("/") else markdown.parent  # "/x" is the repository's x
        resolved = (base / path.lstrip("/")).resolve()
        where = f"{markdown.relative_to(ROOT)}:{line}: ({target})"
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where} does not exist")
    return problems


def test_the_link_finder_finds_links_and_skips_code() -> None:
    text = (
        "See [the ledger](docs/ledger.md#recovery) and ![a diagram](<img/a b.png> 'title').\n"
        "[ref]: ../outside.md\n"
        "Not `[code](nowhere.md)`, nor [a site](https://example.org) or [here](#top).\n"
        "```\n[fenced](nowhere.md)\n```\n"
    )
    assert relative_links(text) == [
        (1, "docs/ledger.md#recovery"),
        (1, "img/a b.png"),
        (2, "../outside.md"),
    ]


def test_markdown_files_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in markdown_files()}
    assert {"README.md", "docs/ledger.md", "deploy/local/README.md"} <= names


@pytest.mark.parametrize(
    "markdown", markdown_files(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_relative_links_resolve_inside_the_repository(markdown: Path) -> None:
    problems = broken(markdown)
    assert not problems, "\n".join(problems)
