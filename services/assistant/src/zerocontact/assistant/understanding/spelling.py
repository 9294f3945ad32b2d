"""Typos: English words corrected to the nearest known word (rapidfuzz), Chinese homophone
typos of an input method (代款 for 贷款, 提钱 for 提前) corrected to the domain term that
sounds the same (pinyin readings of each character, from pypinyin's character table)."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from itertools import pairwise

from rapidfuzz import fuzz, process


class Speller:
    """Corrects English words outside the vocabulary to the nearest known one, so
    "repaymnet" counts as "repayment"."""

    def __init__(self, vocabulary: Iterable[str], *, cutoff: float = 84.0) -> None:
        self._known = frozenset(vocabulary)
        self._choices = sorted(w for w in self._known if len(w) >= 4 and w.isascii())
        self._cutoff = cutoff

    def correct(self, word: str) -> str:
        """``word`` itself when known or too short, else its nearest known word above the
        cutoff, else ``word``."""
        if word in self._known or len(word) < 4 or not word.isascii() or not word.isalpha():
            return word
        nearest = process.extractOne(
            word, self._choices, scorer=fuzz.ratio, score_cutoff=self._cutoff
        )
        return word if nearest is None else str(nearest[0])


@cache
def _readings_table() -> dict[int, str]:
    # Only the character table (small): the phrase tables of pypinyin are not needed here.
    from pypinyin.pinyin_dict import pinyin_dict

    return pinyin_dict


@cache
def readings(char: str) -> frozenset[str]:
    """The toneless pinyin readings of one Chinese character (empty for anything else)."""
    found = _readings_table().get(ord(char))
    if not found:
        return frozenset()
    return frozenset(
        "".join(c for c in unicodedata.normalize("NFKD", r) if c.isascii())
        for r in found.split(",")
    )


def sounds(text: str) -> list[str]:
    """How the Chinese of ``text`` sounds: each character's toneless readings, and each
    reading pair of neighbouring characters. A homophone typo (代款 for 贷款) sounds like the
    word meant, so a classifier that hears these features is not thrown by it."""
    heard = [sorted(r) for r in (readings(ch) for ch in text) if r]
    pairs = [f"{a}_{b}" for left, right in pairwise(heard) for a in left for b in right]
    return [*(r for rs in heard for r in rs), *pairs]


def _is_han(text: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in text)


class Homophones:
    """Replaces a span that sounds like a domain term, character by character, with the term."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._terms = frozenset(t for t in terms if 2 <= len(t) <= 4 and _is_han(t))
        self._by_start: dict[tuple[int, str], list[str]] = defaultdict(list)
        for term in sorted(self._terms):
            for reading in readings(term[0]):
                self._by_start[(len(term), reading)].append(term)
        self._lengths = sorted({len(t) for t in self._terms}, reverse=True)

    def _sounds_like(self, window: str) -> str | None:
        for reading in readings(window[0]):
            for term in self._by_start.get((len(window), reading), ()):
                if all(readings(w) & readings(t) for w, t in zip(window, term, strict=True)):
                    return term
        return None

    def correct(self, text: str) -> str:
        """``text`` with each span that is not a domain term but sounds like one replaced,
        longest terms first, left to right."""
        out: list[str] = []
        i = 0
        while i < len(text):
            for n in self._lengths:
                window = text[i : i + n]
                if len(window) < n or not _is_han(window):
                    continue
                if window in self._terms:
                    out.append(window)
                    i += n
                    break
                term = self._sounds_like(window)
                if term is not None:
                    out.append(term)
                    i += n
                    break
            else:
                out.append(text[i])
                i += 1
        return "".join(out)
