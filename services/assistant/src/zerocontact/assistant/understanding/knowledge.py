"""The knowledge base: Markdown articles (one topic a file, one article a ``##`` section with
a stable id) and their BM25 index (bm25s) over jieba's words."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from zerocontact.assistant.understanding.text import Language, normalize, words
from zerocontact.platform.compliance import Disclosure

_HEADING = re.compile(r"^## (?P<id>[a-z0-9][a-z0-9.\-]*) — (?P<zh>.+?) / (?P<en>.+?)\s*$")
_FIELD = re.compile(r"^(?P<key>keywords|discloses):\s*(?P<value>.*)$")
_ANSWER = re.compile(r"^(?P<lang>中文|English):\s*(?P<text>.*)$")


class KnowledgeError(ValueError):
    """The knowledge base is malformed: the message names the file, line and problem."""


@dataclass(frozen=True)
class Article:
    """One answer, in both languages, with the words customers use for it."""

    id: str
    topic: str
    title_zh: str
    title_en: str
    answer_zh: str
    answer_en: str
    keywords: tuple[str, ...]
    disclosures: frozenset[Disclosure]

    def title(self, lang: Language) -> str:
        """The title in ``lang``."""
        return self.title_zh if lang == "zh" else self.title_en

    def answer(self, lang: Language) -> str:
        """The answer in ``lang``."""
        return self.answer_zh if lang == "zh" else self.answer_en

    @property
    def indexed_text(self) -> str:
        """What retrieval sees: both titles, the keywords and both answers."""
        return " ".join(
            [self.title_zh, self.title_en, *self.keywords, self.answer_zh, self.answer_en]
        )


def parse_markdown(text: str, *, topic: str, source: str = "<text>") -> list[Article]:
    """The articles of one topic file (see ``knowledge/README.md`` for the format)."""
    articles: list[Article] = []
    current: dict[str, str] | None = None
    answer_of: str | None = None

    def close(line_no: int) -> None:
        if current is None:
            return
        for field in ("中文", "English"):
            if not current.get(field):
                raise KnowledgeError(f"{source}:{line_no}: article {current['id']} has no {field}")
        try:
            disclosures = frozenset(
                Disclosure(d.strip()) for d in current.get("discloses", "").split(",") if d.strip()
            )
        except ValueError as e:
            raise KnowledgeError(f"{source}: article {current['id']}: {e}") from None
        articles.append(
            Article(
                id=current["id"],
                topic=topic,
                title_zh=current["zh"],
                title_en=current["en"],
                answer_zh=current["中文"],
                answer_en=current["English"],
                keywords=tuple(
                    k.strip() for k in current.get("keywords", "").split(",") if k.strip()
                ),
                disclosures=disclosures,
            )
        )

    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            close(line_no)
            heading = _HEADING.match(line)
            if heading is None:
                raise KnowledgeError(
                    f"{source}:{line_no}: expected '## <id> — <中文标题> / <English title>'"
                )
            current, answer_of = dict(heading.groupdict()), None
        elif current is not None and (field := _FIELD.match(line)):
            current[field["key"]] = field["value"]
        elif current is not None and (answer := _ANSWER.match(line)):
            answer_of = answer["lang"]
            current[answer_of] = answer["text"].strip()
        elif current is not None and answer_of and line.strip():
            current[answer_of] += " " + line.strip()  # a paragraph wrapped over lines
        elif not line.strip():
            answer_of = None
    close(len(text.splitlines()))
    return articles


def load_articles(directory: Path) -> list[Article]:
    """Every article under ``directory`` (``*.md`` but its README), ids unique."""
    articles: list[Article] = []
    for path in sorted(directory.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        articles += parse_markdown(path.read_text("utf-8"), topic=path.stem, source=str(path))
    seen: set[str] = set()
    for article in articles:
        if article.id in seen:
            raise KnowledgeError(f"{directory}: article id {article.id} appears twice")
        seen.add(article.id)
    if not articles:
        raise KnowledgeError(f"{directory}: no articles")
    return articles


class KnowledgeIndex:
    """BM25 over the articles' words; ``scores`` gives one score per article, in order."""

    def __init__(self, articles: Sequence[Article]) -> None:
        self.articles = tuple(articles)
        corpus = [words(normalize(a.indexed_text)) for a in self.articles]
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus, show_progress=False)
        self.vocabulary = frozenset(w for document in corpus for w in document)

    def scores(self, query_words: Iterable[str]) -> np.ndarray:
        """BM25 score of each article for the query's words (0 where nothing matches)."""
        query = [w for w in query_words if w]
        if not query:
            return np.zeros(len(self.articles), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(query), dtype=np.float32)
