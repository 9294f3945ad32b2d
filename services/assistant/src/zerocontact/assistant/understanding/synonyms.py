"""Query expansion: a colloquial or variant wording also brings the knowledge base's term.

The lexicon is ``synonyms.txt`` (one line a term: ``term: variant, variant``), written from
the articles. A message containing a variant (Chinese as a substring, English as whole words)
gets the term appended, so "能借多少" meets the articles and training lines that say "额度".
"""

from __future__ import annotations

import re
from pathlib import Path

from zerocontact.assistant.understanding.text import normalize

SYNONYMS = Path(__file__).with_name("synonyms.txt")

__all__ = ["SYNONYMS", "Lexicon"]


class Lexicon:
    """Variants to terms, matched in one pass (longest variant first)."""

    def __init__(self, entries: dict[str, list[str]]) -> None:
        self._term: dict[str, str] = {}
        for term, variants in entries.items():
            for variant in variants:
                self._term.setdefault(normalize(variant), normalize(term))
        alternatives = [
            re.escape(v) if not v.isascii() else rf"\b{re.escape(v)}\b"
            for v in sorted(self._term, key=len, reverse=True)
        ]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    @classmethod
    def load(cls, path: Path = SYNONYMS) -> Lexicon:
        """Read a lexicon file (``#`` comments and blank lines skipped)."""
        entries: dict[str, list[str]] = {}
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            term, sep, variants = line.partition(":")
            if not sep or not term.strip():
                raise ValueError(f"{path}:{number}: expected 'term: variant, variant, ...'")
            entries.setdefault(term.strip(), []).extend(
                v.strip() for v in variants.split(",") if v.strip()
            )
        return cls(entries)

    def terms(self, text: str) -> list[str]:
        """The terms whose variants occur in normalised ``text`` (each once, in order)."""
        if self._pattern is None:
            return []
        found = dict.fromkeys(self._term[m.group(0)] for m in self._pattern.finditer(text))
        return [t for t in found if t not in text]

    def expand(self, text: str) -> str:
        """``text`` with the terms of its variants appended."""
        terms = self.terms(text)
        return f"{text} {' '.join(terms)}" if terms else text
