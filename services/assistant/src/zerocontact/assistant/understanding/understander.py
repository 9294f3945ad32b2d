"""Understanding a message (intent, article, slots, confidence, why) and composing the reply
that passes the red-line checker."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from zerocontact.assistant.understanding import intents, replies, slots
from zerocontact.assistant.understanding.classifier import FAQ_PREFIX, IntentClassifier
from zerocontact.assistant.understanding.knowledge import Article, KnowledgeIndex, load_articles
from zerocontact.assistant.understanding.labelled import Example, read_examples
from zerocontact.assistant.understanding.spelling import Homophones, Speller
from zerocontact.assistant.understanding.text import (
    DOMAIN_WORDS,
    Language,
    language,
    normalize,
    warm_up,
    words,
)
from zerocontact.platform.compliance import Disclosure, check_text

__all__ = ["DATA_DIR", "KNOWLEDGE_DIR", "Reply", "Understander", "Understanding"]


def _resource(name: str) -> Path:
    # In a wheel the knowledge base and the data sit beside the package; in the repository
    # they sit at the distribution's root (services/assistant/).
    packaged = Path(__file__).resolve().parents[1] / name
    return packaged if packaged.exists() else Path(__file__).resolve().parents[4] / name


KNOWLEDGE_DIR = _resource("knowledge")
DATA_DIR = _resource("data")

# Below this confidence the message is `unknown` (the service offers a person instead).
CONFIDENCE_THRESHOLD = 0.15
# How the article is chosen among faq answers: classifier, BM25, fuzzy keyword match.
WEIGHTS = (0.70, 0.20, 0.10)
# Mentions that make an answer a product offer, and the disclosure each then needs.
_PRODUCT_MENTIONS = (
    (re.compile(r"经营贷|310贷|business loan", re.IGNORECASE), Disclosure.ANNUALIZED_RATE),
    (re.compile(r"理财|基金|money-market fund|investment product", re.IGNORECASE), Disclosure.RISK),
)


@dataclass(frozen=True)
class Understanding:
    """What a message asks for, how sure the assistant is, and why."""

    intent: str
    confidence: float
    article_id: str | None
    language: Language
    slots: dict[str, str] = field(default_factory=dict)
    explanation: str = ""


@dataclass(frozen=True)
class Reply:
    """What to show the customer; ``blocked`` when the red-line check replaced the answer."""

    text: str
    article_id: str | None
    intent: str
    confidence: float
    blocked: bool = False
    findings: list[str] = field(default_factory=list)


class Understander:
    """Trained and indexed once (``load``); then ``understand`` and ``compose`` are pure."""

    def __init__(self, articles: list[Article], training: list[Example]) -> None:
        warm_up()
        self.articles = {a.id: a for a in articles}
        unknown = sorted({e.article_id for e in training if e.article_id} - set(self.articles))
        if unknown:
            raise ValueError(
                f"the training set refers to articles not in the knowledge base: {unknown}"
            )
        self._index = KnowledgeIndex(articles)
        vocabulary = set(self._index.vocabulary)
        for example in training:
            vocabulary.update(words(normalize(example.text)))
        self._speller = Speller(vocabulary)
        domain_terms = [
            line.split()[0] for line in DOMAIN_WORDS.read_text("utf-8").splitlines() if line.strip()
        ]
        self._homophones = Homophones(
            [*domain_terms, *(normalize(k) for a in articles for k in a.keywords)]
        )
        texts = [self._normalize(e.text) for e in training]
        labels = [e.label for e in training]
        # Each article's titles and keywords are examples of it too.
        for article in articles:
            for text in (article.title_zh, article.title_en, *article.keywords):
                texts.append(normalize(text))
                labels.append(f"{FAQ_PREFIX}{article.id}")
        self._classifier = IntentClassifier(texts, labels, tokens=self._words)
        self._article_ids = [a.id for a in self._index.articles]
        self._keywords = [
            [normalize(k) for k in (*a.keywords, a.title_zh, a.title_en)]
            for a in self._index.articles
        ]

    @classmethod
    def load(
        cls, *, knowledge_dir: Path = KNOWLEDGE_DIR, train_path: Path | None = None
    ) -> Understander:
        """Index the knowledge base and train on the labelled set (deterministic)."""
        return cls(
            load_articles(knowledge_dir), read_examples(train_path or DATA_DIR / "train.jsonl")
        )

    def _normalize(self, text: str) -> str:
        return self._homophones.correct(normalize(text))

    def _words(self, text: str) -> list[str]:
        return [self._speller.correct(w) for w in words(text)]

    def understand(self, text: str) -> Understanding:
        """The intent (and article, slots) of one message, with its confidence and why."""
        norm = self._normalize(text)
        lang = language(norm)
        if not any(ch.isalnum() for ch in norm):
            return Understanding(intents.UNKNOWN, 0.0, None, lang, {}, "empty message")
        ranked = self._classifier.rank(norm)
        faq_mass = sum(
            float(p)
            for label, p in zip(ranked.labels, ranked.probabilities, strict=True)
            if label.startswith(FAQ_PREFIX)
        )
        query = self._words(norm)
        bm25 = self._index.scores(query)
        fuzzy = np.array(
            [
                max((fuzz.partial_ratio(k, norm) for k in ks if len(k) >= 2), default=0.0)
                for ks in self._keywords
            ],
            dtype=np.float64,
        )
        by_classifier = np.array(
            [ranked.probability(f"{FAQ_PREFIX}{a}") for a in self._article_ids]
        ) / max(faq_mass, 1e-9)
        by_bm25 = bm25 / bm25.sum() if bm25.sum() > 0 else np.zeros_like(by_classifier)
        strong = np.where(fuzzy >= 90, fuzzy, 0.0)
        by_fuzzy = strong / strong.sum() if strong.sum() > 0 else np.zeros_like(by_classifier)
        weights = np.array(WEIGHTS)
        if not by_bm25.any():
            weights[1] = 0.0
        if not by_fuzzy.any():
            weights[2] = 0.0
        mix = (
            weights[0] * by_classifier + weights[1] * by_bm25 + weights[2] * by_fuzzy
        ) / weights.sum()
        best_article = int(np.argmax(mix))
        best_intent = next(x for x in ranked.labels if not x.startswith(FAQ_PREFIX))
        intent_p = ranked.probability(best_intent)
        article_p = faq_mass * float(mix[best_article])
        if article_p >= intent_p:
            answer = self._index.articles[best_article]
            intent, confidence, article_id = intents.FAQ, article_p, answer.id
            why = self._classifier.explain(ranked, f"{FAQ_PREFIX}{answer.id}")
            explanation = (
                f"article {answer.id} ({answer.title(lang)}): "
                f"faq p={faq_mass:.2f}, article share {mix[best_article]:.2f} "
                f"(classifier {by_classifier[best_article]:.2f} on {why}, "
                f"BM25 {bm25[best_article]:.2f}, keyword match {fuzzy[best_article]:.0f})"
            )
        else:
            intent, confidence, article_id = best_intent, intent_p, None
            why = self._classifier.explain(ranked, best_intent)
            explanation = f"intent {intent}: p={intent_p:.2f} on {why}"
        if confidence < CONFIDENCE_THRESHOLD:
            explanation = (
                f"unknown: best guess {article_id or intent} at {confidence:.2f} "
                f"< {CONFIDENCE_THRESHOLD}; {explanation}"
            )
            intent, article_id = intents.UNKNOWN, None
        return Understanding(
            intent=intent,
            confidence=round(float(confidence), 4),
            article_id=article_id,
            language=lang,
            slots=slots.extract(norm, intent),
            explanation=explanation,
        )

    def compose(self, understanding: Understanding) -> Reply:
        """The reply for ``understanding`` in its language, checked against the red lines: an
        answer that fails is replaced by a safe one (``blocked``, with the findings)."""
        lang = understanding.language
        article = self.articles.get(understanding.article_id or "")
        disclosures: set[Disclosure] = set()
        if understanding.intent == intents.FAQ and article is not None:
            text = article.answer(lang)
            disclosures |= article.disclosures
        else:
            text = self._saying(understanding)
        disclosures |= {d for pattern, d in _PRODUCT_MENTIONS if pattern.search(text)}
        findings = check_text(text, disclosures=disclosures)
        if findings:
            return Reply(
                text=replies.SAFE_FALLBACK[lang],
                article_id=understanding.article_id,
                intent=understanding.intent,
                confidence=understanding.confidence,
                blocked=True,
                findings=[f"{f.rule}: {f.message}" for f in findings],
            )
        return Reply(
            text=text,
            article_id=understanding.article_id,
            intent=understanding.intent,
            confidence=understanding.confidence,
        )

    @staticmethod
    def _saying(understanding: Understanding) -> str:
        lang = understanding.language
        needed = intents.ACTIONS.get(understanding.intent)
        if needed and needed not in understanding.slots:
            return replies.ASK_SLOT[needed][lang]
        sayings = replies.SAYINGS.get(understanding.intent, replies.SAYINGS[intents.UNKNOWN])
        return sayings[lang]
