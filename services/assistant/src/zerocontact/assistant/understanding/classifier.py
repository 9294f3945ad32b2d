"""The intent classifier: character n-grams and jieba words (TF-IDF) into a multinomial
logistic regression (scikit-learn), trained at start-up from the labelled set, reproducibly.

Labels are the intents, with ``faq`` split by article (``faq:<article id>``), so one model
both tells an action from a question and says which article answers the question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

FAQ_PREFIX = "faq:"
RANDOM_STATE = 20261206


@dataclass(frozen=True)
class Ranked:
    """The classifier's view of one message: labels by probability (highest first)."""

    labels: tuple[str, ...]
    probabilities: np.ndarray
    features: csr_matrix

    def by_label(self) -> dict[str, float]:
        """Every label's probability."""
        return dict(zip(self.labels, self.probabilities.tolist(), strict=True))

    def probability(self, label: str) -> float:
        """The probability of ``label`` (0 when the model never saw it)."""
        for i, known in enumerate(self.labels):
            if known == label:
                return float(self.probabilities[i])
        return 0.0


class IntentClassifier:
    """Fitted on construction; ``rank`` and ``explain`` are pure and fast."""

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        tokens: Callable[[str], list[str]],
        sounds: Callable[[str], list[str]] | None = None,
        c: float = 50.0,
        char_ngrams: tuple[int, int] = (1, 3),
        random_state: int = RANDOM_STATE,
    ) -> None:
        self._chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=char_ngrams, sublinear_tf=True, dtype=np.float32
        )
        self._words = TfidfVectorizer(analyzer=tokens, sublinear_tf=True, dtype=np.float32)
        self._vectorizers = [self._chars, self._words]
        prefixes = ["", "word:"]
        if sounds is not None:
            self._vectorizers.append(
                TfidfVectorizer(analyzer=sounds, sublinear_tf=True, dtype=np.float32)
            )
            prefixes.append("sound:")
        matrix = hstack([v.fit_transform(texts) for v in self._vectorizers]).tocsr()
        self._model = LogisticRegression(C=c, max_iter=2000, random_state=random_state)
        # One BLAS thread: on a small shared machine more threads only spin against the
        # service's own event loop (measured: the fit's CPU went from 5.8 s to 3.4 s).
        with threadpool_limits(limits=1):
            self._model.fit(matrix, list(labels))
        self.classes: tuple[str, ...] = tuple(str(c) for c in self._model.classes_)
        # What one message's features and probabilities need, taken out of the fitted objects
        # once: scikit-learn's transform and predict_proba validate their input on every call,
        # which costs more than the arithmetic for a single short message.
        self._analyzers = [v.build_analyzer() for v in self._vectorizers]
        self._vocabularies: list[dict[str, int]] = [v.vocabulary_ for v in self._vectorizers]
        self._idf = [v.idf_.astype(np.float64) for v in self._vectorizers]
        self._offsets = np.cumsum([0, *(len(v) for v in self._vocabularies)]).tolist()
        coef, intercept = self._model.coef_, self._model.intercept_
        if len(self.classes) == 2:
            # Two classes: scikit-learn keeps one row (the second class's log-odds); the softmax
            # of minus and plus half of it gives the same probabilities as predict_proba.
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.concatenate([-intercept / 2, intercept / 2])
        self._coef = np.asarray(coef, dtype=np.float64)
        self._coef_t = np.ascontiguousarray(self._coef.T)
        self._intercept = np.asarray(intercept, dtype=np.float64).copy()
        self._names = np.concatenate(
            [
                np.array([f"{p}{n}" for n in v.get_feature_names_out()], dtype=object)
                for p, v in zip(prefixes, self._vectorizers, strict=True)
            ]
        )

    def features(self, text: str) -> csr_matrix:
        """The TF-IDF features of normalised ``text`` (as the fitted vectorizers give them:
        sublinear tf times idf, each vectorizer's block scaled to unit length)."""
        indices: list[int] = []
        values: list[float] = []
        for analyzer, vocabulary, idf, offset in zip(
            self._analyzers, self._vocabularies, self._idf, self._offsets, strict=False
        ):
            counts: dict[int, int] = {}
            for term in analyzer(text):
                column = vocabulary.get(term)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            if not counts:
                continue
            columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * idf[columns]
            weights /= np.sqrt(weights @ weights)
            order = np.argsort(columns)
            indices.extend((columns[order] + offset).tolist())
            values.extend(weights[order].tolist())
        width = self._offsets[-1]
        return csr_matrix(
            (
                np.array(values, dtype=np.float32),
                np.array(indices, dtype=np.int32),
                [0, len(indices)],
            ),
            shape=(1, width),
        )

    def probabilities(self, features: csr_matrix) -> np.ndarray:
        """Each class's probability (the multinomial model's softmax), in ``classes`` order."""
        scores = features.data.astype(np.float64) @ self._coef_t[features.indices] + self._intercept
        scores = np.exp(scores - scores.max())
        return np.asarray(scores / scores.sum())

    def rank(self, text: str) -> Ranked:
        """Every label with its probability, highest first."""
        features = self.features(text)
        probabilities = self.probabilities(features)
        order = np.argsort(-probabilities, kind="stable")
        return Ranked(tuple(self.classes[i] for i in order), probabilities[order], features)

    def explain(self, ranked: Ranked, label: str, *, top: int = 3) -> list[str]:
        """The features of the message that pushed hardest towards ``label``."""
        if label not in self.classes:
            return []
        row = ranked.features
        weights = self._coef[self.classes.index(label)][row.indices] * row.data
        best = np.argsort(-weights, kind="stable")[:top]
        return [
            str(self._names[row.indices[i]]).strip() or repr(self._names[row.indices[i]])
            for i in best
            if weights[i] > 0
        ]
