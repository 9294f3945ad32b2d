"""How well the assistant understands, on the labelled evaluation split it never trained on.

In-process (no engines): loads the understanding core as the service does (``Understander.load``:
knowledge base indexed, classifier trained on ``data/train.jsonl``), then over
``data/eval.jsonl`` prints intent accuracy, answer top-1 accuracy (the right intent and, for a
question, the right article), both by kind (paraphrase, typo, mixed) and language, the
red-line blocks and leaks of every composed reply (a leak is a reply shown that fails the
checker: must be 0), the time to load and to understand one message, and the containment of
the scripted conversations in ``data/conversations.jsonl`` as the understanding alone would
route them (hand-off on request, on a complaint the customer escalates, or after two turns
not understood). The last stdout line is JSON.

    .venv/bin/python bench/assistant_eval.py [--show-misses 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from zerocontact.assistant.understanding import Understander, intents
from zerocontact.assistant.understanding.labelled import read_examples
from zerocontact.assistant.understanding.understander import DATA_DIR
from zerocontact.platform.compliance import check_text

GOAL_TOP1 = 0.90
GOAL_CONTAINMENT = 0.75


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def contained_offline(understander: Understander, turns: list[dict[str, str]]) -> tuple[bool, int]:
    """Would the conversation end without a hand-off, routing by understanding alone (a request
    for a person or a complaint goes to one at once, so do two turns not understood in a row)?
    Also the number of turns whose intent matched the script."""
    failed, matched = 0, 0
    for turn in turns:
        understood = understander.understand(turn["text"])
        matched += understood.intent == turn["intent"]
        if understood.intent in (intents.HANDOFF, intents.COMPLAINT):
            return False, matched
        failed = failed + 1 if understood.intent == intents.UNKNOWN else 0
        if failed >= 2:
            return False, matched
    return True, matched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-misses", type=int, default=15, help="misses to print")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args()

    started, cpu_started = time.perf_counter(), time.process_time()
    understander = Understander.load(train_path=args.data / "train.jsonl")
    load_s, load_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    examples = read_examples(args.data / "eval.jsonl")

    by: dict[str, Counter[str]] = defaultdict(Counter)
    latencies_ms: list[float] = []
    understand_cpu_s = 0.0
    blocked = leaks = 0
    misses: list[str] = []
    for example in examples:
        t0, cpu0 = time.perf_counter(), time.process_time()
        understood = understander.understand(example.text)
        latencies_ms.append((time.perf_counter() - t0) * 1000)
        understand_cpu_s += time.process_time() - cpu0
        reply = understander.compose(understood)
        blocked += reply.blocked
        disclosures = (
            understander.articles[reply.article_id].disclosures
            if reply.article_id and not reply.blocked
            else frozenset()
        )
        leaks += bool(check_text(reply.text, disclosures=disclosures))
        intent_ok = understood.intent == example.intent
        top1_ok = intent_ok and understood.article_id == example.article_id
        for group in ("all", f"kind:{example.kind}", f"lang:{example.lang}"):
            by[group]["n"] += 1
            by[group]["intent"] += intent_ok
            by[group]["top1"] += top1_ok
        if not top1_ok and len(misses) < args.show_misses:
            misses.append(
                f"  {example.text!r}: expected {example.article_id or example.intent}, "
                f"got {understood.article_id or understood.intent} ({understood.confidence:.2f})"
            )

    conversations = [
        json.loads(line)
        for line in (args.data / "conversations.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    contained = turns = turns_matched = 0
    for conversation in conversations:
        ok, matched = contained_offline(understander, conversation["turns"])
        contained += ok
        turns += len(conversation["turns"])
        turns_matched += matched

    total = by["all"]
    result = {
        "eval_questions": total["n"],
        "intent_accuracy": round(total["intent"] / total["n"], 4),
        "top1_accuracy": round(total["top1"] / total["n"], 4),
        "red_line_blocks": blocked,
        "red_line_leaks": leaks,
        "containment_offline": round(contained / len(conversations), 4),
        "conversations": len(conversations),
        "conversation_turn_accuracy": round(turns_matched / turns, 4),
        "load_s": round(load_s, 2),
        "load_cpu_s": round(load_cpu_s, 2),
        "understand_p50_ms": round(statistics.median(latencies_ms), 2),
        "understand_p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "understand_cpu_ms": round(understand_cpu_s * 1000 / len(examples), 2),
    }
    print(f"assistant eval: {total['n']} questions never trained on ({args.data / 'eval.jsonl'})")
    print(f"{'group':<16}{'n':>5}{'intent':>9}{'top-1':>9}")
    for group in sorted(by, key=lambda g: (g != "all", g)):
        c = by[group]
        print(f"{group:<16}{c['n']:>5}{c['intent'] / c['n']:>9.1%}{c['top1'] / c['n']:>9.1%}")
    if misses:
        print("misses (first ones):")
        print("\n".join(misses))
    print(
        f"red lines: {blocked} replies blocked and replaced, {leaks} leaks (must be 0); "
        f"containment (understanding alone): {contained}/{len(conversations)} conversations "
        f"closed without a hand-off, {turns_matched}/{turns} turns understood as scripted"
    )
    print(
        f"load {load_s:.2f} s ({load_cpu_s:.2f} s CPU); understand p50 "
        f"{result['understand_p50_ms']} ms, p99 {result['understand_p99_ms']} ms "
        f"({result['understand_cpu_ms']} ms CPU on average); goals: "
        f"top-1 >= {GOAL_TOP1:.0%} ({'met' if result['top1_accuracy'] >= GOAL_TOP1 else 'MISSED'}), "
        f"leaks 0 ({'met' if leaks == 0 else 'MISSED'})"
    )
    print(json.dumps(result))
    return 0 if leaks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
