"""The second stage: is a message asking the assistant to *do* something, or asking *about* it?

The first stage (one classifier over every intent and article) confuses an action with the
article about the same topic: "sign me out of the other devices" (``identity.revoke_sessions``)
and "how do I sign out of the other devices" (``security.sessions``) share every topic word
and differ only in how they are asked. This stage is one binary model trained on the lines of
all those pairs pooled together, so what marks a request (帮我, 给我, 我要, please, lock, quote)
or a question (怎么, 如何, how, what, why) is learnt across topics, from the words the first
stage drops as stop words (我, 请, 要, how, what, please) as well as the rest. It only splits
a topic the first stage already chose between the action and its article; it never changes
the topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Literal

from zerocontact.assistant.understanding import intents
from zerocontact.assistant.understanding.classifier import IntentClassifier

__all__ = ["ACTION_ARTICLES", "PAIRS", "ActionOrArticle", "Pairs"]

Pairs = Literal["core", "all"]

# Each action with the articles about the same topic, the pairs the first stage confuses.
ACTION_ARTICLES: Final[Mapping[Pairs, Mapping[str, tuple[str, ...]]]] = {
    "core": {
        intents.IDENTITY_REVOKE_SESSIONS: ("security.sessions",),
        intents.IDENTITY_LOCK_DEVICE: ("security.lost-phone",),
        intents.LOAN_EARLY_REPAYMENT_QUOTE: ("early.quote",),
    },
    "all": {
        intents.IDENTITY_REVOKE_SESSIONS: ("security.sessions",),
        intents.IDENTITY_LOCK_DEVICE: ("security.lost-phone",),
        intents.LOAN_EARLY_REPAYMENT_QUOTE: ("early.quote",),
        intents.PAYROLL_BATCH_STATUS: ("payroll.batch-status",),
        intents.LOAN_REPAY: ("repay.methods", "early.how"),
        intents.LOAN_NEXT_INSTALLMENT: ("repay.schedule",),
        intents.LOAN_APPLICATION_STATUS: ("loan.apply-process",),
        intents.COMPLAINT: ("complaints.how",),
        intents.HANDOFF: ("service.hours",),
    },
}
PAIRS: Final[tuple[Pairs, ...]] = ("core", "all")
_ACT, _ASK = "act", "ask"


class ActionOrArticle:
    """Fitted on construction from labelled lines (``(text, intent, article_id)``, text
    normalised as the first stage normalises it); ``request_probability`` is pure."""

    def __init__(
        self,
        lines: Iterable[tuple[str, str, str | None]],
        *,
        tokens: Callable[[str], list[str]],
        pairs: Pairs = "all",
        c: float = 10.0,
    ) -> None:
        self.actions: Mapping[str, tuple[str, ...]] = ACTION_ARTICLES[pairs]
        # Article id -> the action about the same topic.
        self.action_of: dict[str, str] = {
            article: action for action, articles in self.actions.items() for article in articles
        }
        texts: list[str] = []
        labels: list[str] = []
        for text, intent, article_id in lines:
            if intent in self.actions:
                texts.append(text)
                labels.append(_ACT)
            elif article_id in self.action_of:
                texts.append(text)
                labels.append(_ASK)
        self._classifier: IntentClassifier | None = None
        if len(set(labels)) == 2:
            self._classifier = IntentClassifier(texts, labels, tokens=tokens, c=c)

    def request_probability(self, norm: str) -> float:
        """How likely normalised ``norm`` asks for the action rather than about it (0.5 when
        the stage had nothing to learn from)."""
        if self._classifier is None:
            return 0.5
        return self._classifier.rank(norm).probability(_ACT)

    def cues(self, norm: str, *, request: bool, top: int = 3) -> list[str]:
        """The features of ``norm`` that pushed hardest towards a request (or a question)."""
        if self._classifier is None:
            return []
        ranked = self._classifier.rank(norm)
        return self._classifier.explain(ranked, _ACT if request else _ASK, top=top)

    def group(self, label: str) -> tuple[str, Sequence[str]] | None:
        """The action and its articles when ``label`` (an intent or an article id) is one of
        a pair, else None."""
        if label in self.actions:
            return label, self.actions[label]
        action = self.action_of.get(label)
        return (action, self.actions[action]) if action is not None else None
