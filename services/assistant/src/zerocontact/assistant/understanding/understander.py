"""Understanding a message (intent, article, slots, confidence, why) and composing the reply
that passes the red-line checker."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from zerocontact.assistant.understanding import intents, replies, slots, spelling
from zerocontact.assistant.understanding.action_or_article import ActionOrArticle, Pairs
from zerocontact.assistant.understanding.classifier import FAQ_PREFIX, IntentClassifier, Ranked
from zerocontact.assistant.understanding.knowledge import Article, KnowledgeIndex, load_articles
from zerocontact.assistant.understanding.labelled import Example, read_examples
from zerocontact.assistant.understanding.spelling import Homophones, Speller
from zerocontact.assistant.understanding.synonyms import Lexicon
from zerocontact.assistant.understanding.text import (
    DOMAIN_WORDS,
    Language,
    all_words,
    language,
    normalize,
    warm_up,
    words,
)
from zerocontact.platform.compliance import Disclosure, check_text

__all__ = [
    "DATA_DIR",
    "KNOWLEDGE_DIR",
    "Evidence",
    "Reply",
    "Tuning",
    "Understander",
    "Understanding",
]


def _resource(name: str) -> Path:
    # In a wheel the knowledge base and the data sit beside the package; in the repository
    # they sit at the distribution's root (services/assistant/).
    packaged = Path(__file__).resolve().parents[1] / name
    return packaged if packaged.exists() else Path(__file__).resolve().parents[4] / name


KNOWLEDGE_DIR = _resource("knowledge")
DATA_DIR = _resource("data")


@dataclass(frozen=True)
class Tuning:
    """The understanding's hyper-parameters, chosen by cross-validation on the training set
    alone (``bench/assistant_cv.py``; docs/assistant-understanding.md)."""

    # The logistic regression's inverse regularisation.
    c: float = 50.0
    # Character n-gram lengths of the classifier's TF-IDF.
    char_ngrams: tuple[int, int] = (1, 3)
    # How the article is chosen among faq answers: classifier, BM25, fuzzy keyword match.
    weights: tuple[float, float, float] = (0.70, 0.20, 0.10)
    # Below this confidence the message is `unknown` (the service offers a person instead).
    threshold: float = 0.10
    # Colloquial wordings bring the knowledge base's term (synonyms.txt); off: cross-validation
    # found it no better (86.1 % top-1 with, 86.2 % without, sounds on 87.0 % / 87.1 %).
    expand: bool = False
    # The classifier also hears how the Chinese sounds (pinyin syllables and pairs).
    sounds: bool = True
    # The second stage (action_or_article): how much its word on "do it" against "tell me
    # about it" counts when the first stage chose an action or the article about it (0: off),
    # which pairs it knows, and its logistic regression's C.
    # Cross-validated top-1 on 2,419 lines: 87.7 % off, 88.9 % at (0.75, "all", 10).
    stage2: float = 0.75
    stage2_pairs: Pairs = "all"
    stage2_c: float = 10.0


TUNING = Tuning()
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
class Evidence:
    """What each source says of one message, before the weights and threshold decide."""

    norm: str
    language: Language
    ranked: Ranked
    faq_mass: float
    by_classifier: np.ndarray
    bm25: np.ndarray
    fuzzy: np.ndarray
    best_intent: str
    intent_p: float
    # The second stage's probability that the message asks for an action, not about it.
    request_p: float = 0.5


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

    def __init__(
        self, articles: list[Article], training: list[Example], tuning: Tuning = TUNING
    ) -> None:
        warm_up()
        self.tuning = tuning
        self._lexicon = Lexicon.load()
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
        texts = [self._expand(self._normalize(e.text)) for e in training]
        labels = [e.label for e in training]
        # Each article's titles and keywords are examples of it too.
        for article in articles:
            for text in (article.title_zh, article.title_en, *article.keywords):
                texts.append(self._expand(normalize(text)))
                labels.append(f"{FAQ_PREFIX}{article.id}")
        self._classifier = IntentClassifier(
            texts,
            labels,
            tokens=self._words,
            sounds=spelling.sounds if tuning.sounds else None,
            c=tuning.c,
            char_ngrams=tuning.char_ngrams,
        )
        self._lines = [(self._normalize(e.text), e.intent, e.article_id) for e in training]
        self._stage2 = self.fit_second_stage(tuning.stage2_pairs, tuning.stage2_c)
        self._article_ids = [a.id for a in self._index.articles]
        self._faq_labels = [f"{FAQ_PREFIX}{a}" for a in self._article_ids]
        # Every keyword and title once, with the article it belongs to (one vectorised match).
        self._keywords: list[str] = []
        owners: list[int] = []
        for i, a in enumerate(self._index.articles):
            for k in dict.fromkeys(normalize(k) for k in (*a.keywords, a.title_zh, a.title_en)):
                if len(k) >= 2:
                    self._keywords.append(k)
                    owners.append(i)
        self._keyword_owner = np.array(owners)

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

    def _expand(self, norm: str) -> str:
        return self._lexicon.expand(norm) if self.tuning.expand else norm

    def _words(self, text: str) -> list[str]:
        return [self._speller.correct(w) for w in words(text)]

    def _all_words(self, text: str) -> list[str]:
        return [self._speller.correct(w) for w in all_words(text)]

    def fit_second_stage(self, pairs: Pairs, c: float) -> ActionOrArticle:
        """The second stage fitted on this understander's training lines (cross-validation
        tries several on one first stage; ``decide`` takes one)."""
        return ActionOrArticle(self._lines, tokens=self._all_words, pairs=pairs, c=c)

    def understand(self, text: str) -> Understanding:
        """The intent (and article, slots) of one message, with its confidence and why."""
        evidence = self.evidence(text)
        if evidence is None:
            norm = self._normalize(text)
            return Understanding(intents.UNKNOWN, 0.0, None, language(norm), {}, "empty message")
        return self.decide(evidence, self.tuning)

    def evidence(self, text: str) -> Evidence | None:
        """What the classifier, BM25 and the keyword match say of ``text`` (None when it has
        nothing to understand); ``decide`` turns it into an understanding."""
        norm = self._normalize(text)
        if not any(ch.isalnum() for ch in norm):
            return None
        expanded = self._expand(norm)
        ranked = self._classifier.rank(expanded)
        by_label = ranked.by_label()
        faq_probabilities = np.array([by_label.get(label, 0.0) for label in self._faq_labels])
        faq_mass = float(faq_probabilities.sum())
        bm25 = self._index.scores(self._words(expanded))
        # The keyword match is literal: against what the customer wrote, not the expansion.
        fuzzy = np.zeros(len(self._article_ids), dtype=np.float64)
        matched = process.cdist(self._keywords, [norm], scorer=fuzz.partial_ratio)[:, 0]
        np.maximum.at(fuzzy, self._keyword_owner, matched)
        best_intent = next(x for x in ranked.labels if not x.startswith(FAQ_PREFIX))
        return Evidence(
            norm=norm,
            language=language(norm),
            ranked=ranked,
            faq_mass=faq_mass,
            by_classifier=faq_probabilities / max(faq_mass, 1e-9),
            bm25=bm25,
            fuzzy=fuzzy,
            best_intent=best_intent,
            intent_p=by_label[best_intent],
            request_p=self._stage2.request_probability(norm),
        )

    def decide(
        self, evidence: Evidence, tuning: Tuning, *, stage2: ActionOrArticle | None = None
    ) -> Understanding:
        """The understanding ``evidence`` gives with ``tuning``'s weights and threshold (and
        ``stage2`` instead of the fitted second stage, whose ``request_p`` evidence must
        carry)."""
        e, lang = evidence, evidence.language
        zeros = np.zeros_like(e.by_classifier)
        by_bm25 = e.bm25 / e.bm25.sum() if e.bm25.sum() > 0 else zeros
        strong = np.where(e.fuzzy >= 90, e.fuzzy, 0.0)
        by_fuzzy = strong / strong.sum() if strong.sum() > 0 else zeros
        weights = np.array(tuning.weights)
        if not by_bm25.any():
            weights[1] = 0.0
        if not by_fuzzy.any():
            weights[2] = 0.0
        mix = (
            weights[0] * e.by_classifier + weights[1] * by_bm25 + weights[2] * by_fuzzy
        ) / weights.sum()
        best_article = int(np.argmax(mix))
        article_p = e.faq_mass * float(mix[best_article])
        chosen = self._article_ids[best_article] if article_p >= e.intent_p else e.best_intent
        chosen, confidence, why_stage2 = self._second_stage(
            e, mix, chosen, tuning, stage2 or self._stage2
        )
        if chosen in self.articles:
            answer = self.articles[chosen]
            at = self._article_ids.index(chosen)
            intent, article_id = intents.FAQ, answer.id
            if not why_stage2:
                confidence = e.faq_mass * float(mix[at])
            why = self._classifier.explain(e.ranked, f"{FAQ_PREFIX}{answer.id}")
            explanation = (
                f"article {answer.id} ({answer.title(lang)}): "
                f"faq p={e.faq_mass:.2f}, article share {mix[at]:.2f} "
                f"(classifier {e.by_classifier[at]:.2f} on {why}, "
                f"BM25 {e.bm25[at]:.2f}, keyword match {e.fuzzy[at]:.0f})"
            )
        else:
            intent, article_id = chosen, None
            if not why_stage2:
                confidence = e.ranked.probability(chosen)
            why = self._classifier.explain(e.ranked, chosen)
            explanation = f"intent {intent}: p={e.ranked.probability(chosen):.2f} on {why}"
        explanation += why_stage2
        if confidence < tuning.threshold:
            explanation = (
                f"unknown: best guess {article_id or intent} at {confidence:.2f} "
                f"< {tuning.threshold}; {explanation}"
            )
            intent, article_id = intents.UNKNOWN, None
        return Understanding(
            intent=intent,
            confidence=round(float(confidence), 4),
            article_id=article_id,
            language=lang,
            slots=slots.extract(e.norm, intent),
            explanation=explanation,
        )

    def _second_stage(
        self, e: Evidence, mix: np.ndarray, chosen: str, tuning: Tuning, stage: ActionOrArticle
    ) -> tuple[str, float, str]:
        """Between an action and the article about it, the first stage's share blended with
        the second stage's: the label, its confidence (the pair's probability times the
        blended share) and what to add to the explanation ("" when the stage did not apply)."""
        group = stage.group(chosen) if tuning.stage2 > 0 else None
        if group is None:
            return chosen, 0.0, ""
        action, articles = group
        at = max((self._article_ids.index(a) for a in articles), key=lambda i: mix[i])
        article_p = e.faq_mass * float(mix[at])
        action_p = e.ranked.probability(action)
        pair_p = action_p + article_p
        if pair_p <= 0:
            return chosen, 0.0, ""
        share = (1 - tuning.stage2) * action_p / pair_p + tuning.stage2 * e.request_p
        request = share >= 0.5
        label = action if request else self._article_ids[at]
        cues = stage.cues(e.norm, request=request)
        why = (
            f"; second stage: {'a request' if request else 'a question'} "
            f"(p request {e.request_p:.2f} on {cues}, blended {share:.2f})"
        )
        return label, pair_p * (share if request else 1 - share), why

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
