"""The labelled questions (``data/train.jsonl``, ``data/eval.jsonl``): one JSON object a line,
``{"text", "intent", "article_id", "lang", "kind"}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zerocontact.assistant.understanding.intents import FAQ, INTENTS
from zerocontact.assistant.understanding.text import Language

Kind = Literal["canonical", "paraphrase", "typo", "mixed"]
KINDS: tuple[Kind, ...] = ("canonical", "paraphrase", "typo", "mixed")


class LabelledDataError(ValueError):
    """A labelled line is malformed: the message names the file, line and field."""


@dataclass(frozen=True)
class Example:
    """One labelled question."""

    text: str
    intent: str
    article_id: str | None
    lang: Language
    kind: Kind

    @property
    def label(self) -> str:
        """The classifier's label: the intent, or ``faq:<article id>``."""
        return f"{FAQ}:{self.article_id}" if self.intent == FAQ else self.intent


def read_examples(path: Path) -> list[Example]:
    """Every example of a JSON-lines file, each line checked."""
    examples: list[Example] = []
    for line_no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabelledDataError(f"{where}: not JSON ({e.msg})") from None
        text, intent, article_id = row.get("text"), row.get("intent"), row.get("article_id")
        lang, kind = row.get("lang"), row.get("kind")
        if not isinstance(text, str) or not text.strip():
            raise LabelledDataError(f"{where}: text must be a non-empty string")
        if intent not in INTENTS:
            raise LabelledDataError(f"{where}: intent {intent!r} is not one of intents.INTENTS")
        if (intent == FAQ) != isinstance(article_id, str):
            raise LabelledDataError(f"{where}: article_id is required for faq and null otherwise")
        if lang not in ("zh", "en"):
            raise LabelledDataError(f"{where}: lang must be 'zh' or 'en'")
        if kind not in KINDS:
            raise LabelledDataError(f"{where}: kind must be one of {', '.join(KINDS)}")
        examples.append(Example(text, intent, article_id, lang, kind))
    return examples
