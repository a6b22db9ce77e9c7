"""Benchmark: ``vqa.evaluation.evaluate`` against the official evaluation's algorithm.

Generates a VQA v2 val sized input locally (214,354 questions, 10 answers each, answers drawn
from a realistic long-tailed pool with surface variants), scores one results file with ours and with a
literal transcription of the official ``vqaEval.py`` (``tests/official_reference.py``), checks that
every number agrees, and prints the times from the same run. The official algorithm is timed as
it runs (normalising every answer each time it meets it) and once more with its normalisation
memoised, a stronger baseline than the official script itself.

    python scripts/bench_eval.py [--questions 214354] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from official_reference import official_evaluate, processDigitArticle, processPunctuation  # noqa: E402

from vqa.evaluation import evaluate  # noqa: E402

BASE = ["yes", "no", "2", "1", "3", "white", "red", "blue", "black", "green", "dog", "cat",
        "tennis", "baseball", "kitchen", "pizza", "frisbee", "none", "man", "woman"]
TYPES = [("yes/no", "is the"), ("number", "how many"), ("other", "what color is the"),
         ("other", "what is the")]


def pool(rng: random.Random, size: int = 20000) -> list[str]:
    """A long tail of answers plus surface variants the normalisation undoes."""
    words = BASE + [f"thing {i}" for i in range(size)]
    variants = ["Yes", "yes!", "two", "Two.", "a dog", "the cat", "hot-dog", "1,000", "st. louis",
                "dont", "red\n"]
    return words + variants


def make_files(out: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    rng = random.Random(seed)
    answers = pool(rng)
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(answers))))  # Zipf-like
    questions, annotations, results = [], [], []
    for qid in range(n):
        iid = qid // 5
        atype, qtype = rng.choice(TYPES)
        base = rng.choices(answers, cum_weights=cum)[0]
        human = [base if rng.random() < 0.7 else rng.choices(answers, cum_weights=cum)[0]
                 for _ in range(10)]
        questions.append({"image_id": iid, "question": f"{qtype} x?", "question_id": qid})
        annotations.append({
            "question_id": qid, "image_id": iid, "question_type": qtype, "answer_type": atype,
            "multiple_choice_answer": base,
            "answers": [{"answer": a, "answer_confidence": rng.choice(["yes", "maybe", "no"]),
                         "answer_id": k + 1} for k, a in enumerate(human)]})
        pred = base if rng.random() < 0.6 else rng.choices(answers, cum_weights=cum)[0]
        results.append({"question_id": qid, "answer": pred})
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "questions.json", out / "annotations.json", out / "results.json"
    for p, obj in zip(paths, ({"data_subtype": "val2014", "questions": questions},
                              {"annotations": annotations}, results), strict=True):
        p.write_text(json.dumps(obj))
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=214354)
    p.add_argument("--out", default="runs/bench_eval")
    p.add_argument("--version", choices=("current", "2016"), default="current")
    a = p.parse_args()
    q, ann, res = make_files(Path(a.out), a.questions)
    print(f"{a.questions} questions, {10 * a.questions} human answers in {a.out}")

    t = time.perf_counter()
    ours = evaluate(q, ann, res, a.version)
    t_ours = time.perf_counter() - t
    times = {}
    for name, norm in (("official", {}), ("official, memoised", {
            "punctuation": functools.lru_cache(None)(processPunctuation),
            "digit_article": functools.lru_cache(None)(processDigitArticle)})):
        t = time.perf_counter()
        qs, anns, rs = (json.loads(x.read_text()) for x in (q, ann, res))
        ref = official_evaluate(qs, anns, rs, a.version, **norm)
        times[name] = time.perf_counter() - t
        del qs, anns, rs
        for key in ("overall", "perQuestionType", "perAnswerType"):
            if ours[key] != ref[key]:
                sys.exit(f"MISMATCH ({name}) in {key}: ours {ours[key]} official {ref[key]}")
    print(f"numbers identical: overall {ours['overall']} (evaluation version '{a.version}')")
    print("times include reading the JSON files:")
    print(f"  vqa evaluate:                  {t_ours:6.2f} s")
    for name, t in times.items():
        label = f"{name} algorithm:"
        print(f"  {label:<30} {t:6.2f} s   ({t / t_ours:.1f}x slower than vqa evaluate)")

if __name__ == "__main__":
    main()
