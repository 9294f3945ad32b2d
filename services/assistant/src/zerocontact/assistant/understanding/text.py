"""Normalisation, language and tokens of a customer's message.

Chinese is cut into words by jieba (its default dictionary, shipped in the wheel, plus the
domain words of ``domain_words.txt``); English is lower-cased words. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Literal

Language = Literal["zh", "en"]

DOMAIN_WORDS = Path(__file__).with_name("domain_words.txt")

_HAN = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SPACES = re.compile(r"\s+")
# Words that carry no meaning for either index (kept short: the classifier weighs the rest).
_STOPWORDS = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "么",
        "嘛",
        "我",
        "我的",
        "你",
        "您",
        "是",
        "在",
        "有",
        "要",
        "想",
        "请问",
        "请",
        "一下",
        "个",
        "这",
        "那",
        "就",
        "都",
        "也",
        "还是",
        "the",
        "a",
        "an",
        "is",
        "are",
        "am",
        "i",
        "my",
        "me",
        "you",
        "your",
        "to",
        "of",
        "do",
        "does",
        "can",
        "could",
        "would",
        "please",
        "how",
        "what",
        "and",
        "or",
        "for",
        "it",
        "in",
        "on",
        "be",
        "with",
        "will",
    ]
)


def normalize(text: str) -> str:
    """NFKC (full-width to half-width), lower case, one space between words."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def language(text: str) -> Language:
    """``zh`` when Chinese characters outweigh English words (two characters to a word)."""
    han = len(_HAN.findall(text))
    latin = len(_LATIN_WORD.findall(text.lower()))
    return "zh" if han and han >= 2 * latin else "en"


@cache
def _jieba() -> object:
    # jieba 0.42 has invalid escape sequences that warn when its source is first compiled; they
    # are harmless, and a warning must not stop the service (tests turn warnings into errors).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        import jieba

    # Its start-up log lines ("Building prefix dict ...") are noise in a service's JSON logs.
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    # The prefix dictionary built from dict.txt is cached as a file, so later starts skip it.
    tokenizer.tmp_dir = tempfile.gettempdir()
    tokenizer.initialize()
    with DOMAIN_WORDS.open("rb") as domain_words:
        tokenizer.load_userdict(domain_words)
    return tokenizer


def warm_up() -> None:
    """Load jieba's dictionaries now rather than on the first message."""
    _jieba()


def words(text: str) -> list[str]:
    """The meaningful words of normalised ``text``: jieba's cut, without spaces, punctuation
    and stop words."""
    tokenizer = _jieba()
    cut: Iterable[str] = tokenizer.lcut(text)  # type: ignore[attr-defined]
    return [w for w in cut if w.strip() and _is_word(w) and w not in _STOPWORDS]


def all_words(text: str) -> list[str]:
    """Every word of normalised ``text``, stop words included: how a message is asked (我要,
    请, how, what) is in them."""
    tokenizer = _jieba()
    cut: Iterable[str] = tokenizer.lcut(text)  # type: ignore[attr-defined]
    return [w for w in cut if w.strip() and _is_word(w)]


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)
