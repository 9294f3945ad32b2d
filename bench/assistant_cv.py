"""Choose the understanding's hyper-parameters by cross-validation on the training set alone.

The evaluation split (``data/eval.jsonl``) is never read here: each configuration is trained
on k-1 folds of ``data/train.jsonl`` (plus every article's titles and keywords, as the service
trains) and scored on the held-out fold, stratified by label with a fixed seed. Printed per
configuration: top-1 (the right intent and, for a question, the right article) and intent
accuracy over all held-out lines; the best is what ``understander.TUNING`` should say.

    .venv/bin/python bench/assistant_cv.py [--folds 5] [--c 10 50 200] [--char-max 3 4]
        [--expand yes no] [--stage2 0 0.5 1] [--stage2-pairs core all] [--stage2-c 1 10]
        [--fixed-decision]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import replace

from sklearn.model_selection import StratifiedKFold

from zerocontact.assistant.understanding.action_or_article import PAIRS, ActionOrArticle
from zerocontact.assistant.understanding.knowledge import load_articles
from zerocontact.assistant.understanding.labelled import Example, read_examples
from zerocontact.assistant.understanding.understander import (
    DATA_DIR,
    KNOWLEDGE_DIR,
    TUNING,
    Evidence,
    Tuning,
    Understander,
)

SEED = 20261206
WEIGHTS = [(0.7, 0.2, 0.1), (0.6, 0.3, 0.1), (0.5, 0.3, 0.2), (0.8, 0.1, 0.1), (1.0, 0.0, 0.0)]
THRESHOLDS = [0.10, 0.15, 0.20, 0.25]
STAGE2 = [0.0, 0.25, 0.5, 0.75, 1.0]


def score(
    understander: Understander,
    tuning: Tuning,
    stage: ActionOrArticle,
    held_out: list[tuple[Example, Evidence | None]],
    scores: dict[Tuning, list[int]],
    confusions: dict[Tuning, Counter[tuple[str, str]]],
) -> None:
    """Add ``tuning``'s hits (intent, top-1, lines) and confusions on ``held_out``."""
    hits = scores.setdefault(tuning, [0, 0, 0])
    for example, evidence in held_out:
        u = (
            understander.decide(evidence, tuning, stage2=stage)
            if evidence is not None
            else understander.understand(example.text)
        )
        hits[0] += u.intent == example.intent
        hits[1] += u.intent == example.intent and u.article_id == example.article_id
        hits[2] += 1
        expected = example.article_id or example.intent
        got = u.article_id or u.intent
        if got != expected:
            confusions.setdefault(tuning, Counter())[(expected, got)] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--confusions", type=int, default=20, help="confusions to print")
    parser.add_argument("--c", type=float, nargs="+", default=[TUNING.c])
    parser.add_argument("--char-max", type=int, nargs="+", default=[TUNING.char_ngrams[1]])
    yes_no = {True: "yes", False: "no"}
    parser.add_argument(
        "--expand", nargs="+", choices=["yes", "no"], default=[yes_no[TUNING.expand]]
    )
    parser.add_argument(
        "--sounds", nargs="+", choices=["yes", "no"], default=[yes_no[TUNING.sounds]]
    )
    parser.add_argument(
        "--stage2", type=float, nargs="+", default=STAGE2, help="second stage's weights to try"
    )
    parser.add_argument("--stage2-pairs", nargs="+", choices=PAIRS, default=[TUNING.stage2_pairs])
    parser.add_argument("--stage2-c", type=float, nargs="+", default=[TUNING.stage2_c])
    parser.add_argument(
        "--fixed-decision",
        action="store_true",
        help="keep TUNING's weights and threshold (try only the second stage's weight)",
    )
    args = parser.parse_args()

    articles = load_articles(KNOWLEDGE_DIR)
    examples = read_examples(DATA_DIR / "train.jsonl")
    labels = [e.label for e in examples]
    folds = list(
        StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=SEED).split(
            examples, labels
        )
    )
    scores: dict[Tuning, list[int]] = {}
    confusions: dict[Tuning, Counter[tuple[str, str]]] = {}
    started = time.perf_counter()
    grid = itertools.product(args.c, args.char_max, args.expand, args.sounds)
    decisions = (
        [(TUNING.weights, TUNING.threshold)]
        if args.fixed_decision
        else list(itertools.product(WEIGHTS, THRESHOLDS))
    )
    stage2_grid = list(itertools.product(args.stage2_pairs, args.stage2_c))
    for c, char_max, expand, sounds in grid:
        fitted = Tuning(
            c=c, char_ngrams=(1, char_max), expand=expand == "yes", sounds=sounds == "yes"
        )
        for train_idx, test_idx in folds:
            understander = Understander(articles, [examples[i] for i in train_idx], fitted)
            first = [(examples[i], understander.evidence(examples[i].text)) for i in test_idx]
            # The second stage is fitted on the same folds, on top of one first stage.
            for pairs, stage2_c in stage2_grid:
                stage = understander.fit_second_stage(pairs, stage2_c)
                held_out = [
                    (x, replace(e, request_p=stage.request_probability(e.norm)) if e else None)
                    for x, e in first
                ]
                for (weights, threshold), stage2 in itertools.product(decisions, args.stage2):
                    tuning = replace(
                        fitted,
                        weights=weights,
                        threshold=threshold,
                        stage2=stage2,
                        stage2_pairs=pairs,
                        stage2_c=stage2_c,
                    )
                    score(understander, tuning, stage, held_out, scores, confusions)
        print(f"fitted {fitted} ({time.perf_counter() - started:.0f} s)", flush=True)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1][1])
    print(f"{args.folds}-fold cross-validation on {len(examples)} training lines (eval never read)")
    for tuning, (intent, top1, n) in ranked[:15]:
        print(f"  top-1 {top1 / n:6.1%}  intent {intent / n:6.1%}  {tuning}")
    off = next(((t, h) for t, h in ranked if t.stage2 == 0), None)
    if off is not None:
        print(f"  best without the second stage: top-1 {off[1][1] / off[1][2]:6.1%}  {off[0]}")
    best, (intent, top1, n) = ranked[0]
    print("most frequent confusions of the best (expected -> got, held-out training lines):")
    for (expected, got), count in confusions.get(best, Counter()).most_common(args.confusions):
        print(f"  {count:3d}  {expected} -> {got}")
    print(
        json.dumps(
            {"best": repr(best), "cv_top1": round(top1 / n, 4), "cv_intent": round(intent / n, 4)}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
