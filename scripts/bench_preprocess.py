"""Benchmark: vocabularies, question tokens and soft targets for a VQA v2 train sized split.

Generates 443,757 questions with 10 answers each locally (the answer pool of
``bench_eval.py``) and times each preprocessing step once.

    python scripts/bench_preprocess.py [--questions 443757] [--out runs/bench_preprocess]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_eval import make_files  # noqa: E402

from vqa.data.dataset import soft_targets  # noqa: E402
from vqa.data.formats import load_vqa  # noqa: E402
from vqa.data.vocab import VocabBundle, tokenize  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=443757)
    p.add_argument("--out", default="runs/bench_preprocess")
    a = p.parse_args()
    q, ann, _ = make_files(Path(a.out), a.questions, seed=1)
    times = {}
    t = time.perf_counter()
    examples, _ = load_vqa(q, ann)
    times["read + validate"] = time.perf_counter() - t
    t = time.perf_counter()
    tokens = [tokenize(ex.question) for ex in examples]
    times["tokenize"] = time.perf_counter() - t
    t = time.perf_counter()
    vocab = VocabBundle.build(tokens, (ex.multiple_choice_answer for ex in examples), 1, 1000)
    times["vocabularies"] = time.perf_counter() - t
    t = time.perf_counter()
    targets = soft_targets(examples, vocab)
    times["soft targets"] = time.perf_counter() - t
    n_answers = sum(len(ex.answers) for ex in examples)
    print(f"{len(examples)} questions, {n_answers} answers, {len(targets)} target rows")
    for k, v in times.items():
        print(f"  {k:<16} {v:6.2f} s")
    print(f"  {'total':<16} {sum(times.values()):6.2f} s")


if __name__ == "__main__":
    main()
