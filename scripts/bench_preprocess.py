"""Benchmark: vocabularies, question tokens and soft targets for a VQA v2 train sized split.

Generates 443,757 questions with 10 answers each locally (the answer pool of ``bench_eval.py``),
then times what ``VQADataModule`` does: building the vocabularies and the preprocessed split
(read + validate, tokens, soft targets) and writing both to its on-disk cache, and then a fresh
data module reading them back from the cache.

    python scripts/bench_preprocess.py [--questions 443757] [--out runs/bench_preprocess]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_eval import make_files  # noqa: E402

from vqa.data import Split, VQADataModule  # noqa: E402


def timed(dm: VQADataModule) -> tuple[float, float, int]:
    t = time.perf_counter()
    _ = dm.pipeline
    t_vocab = time.perf_counter() - t
    t = time.perf_counter()
    data, _ = dm.preprocessed("train")
    return t_vocab, time.perf_counter() - t, len(data.examples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=443757)
    p.add_argument("--out", default="runs/bench_preprocess")
    a = p.parse_args()
    q, ann, _ = make_files(Path(a.out), a.questions, seed=1)
    cache = Path(a.out) / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    split = Split(str(q), str(ann))
    print(f"{a.questions} questions, {10 * a.questions} answers")
    for run in ("build + write cache", "read from cache"):
        dm = VQADataModule(split, max_question_length=26, num_answers=1000, cache_dir=str(cache))
        t_vocab, t_split, n = timed(dm)
        print(f"  {run:<20} vocabularies {t_vocab:6.2f} s   tokens + soft targets {t_split:6.2f} s"
              f"   total {t_vocab + t_split:6.2f} s   ({n} rows)")


if __name__ == "__main__":
    main()
