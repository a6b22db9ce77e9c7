"""``vqa compare``: two systems on the same questions, with a paired bootstrap interval.

Each system is one results file, or several (the seeds of one configuration: a question's score is
then the mean of its scores over the files). Every question is scored as the dataset's benchmark
scores it (``vqa.benchmark.question_scores``; ``vqa evaluate`` gives the same overall numbers).

* **Difference** B - A in points of the benchmark's percentage, with a 95 % percentile interval
  from a paired bootstrap over questions (Efron & Tibshirani 1993, ch. 13; the paired form used
  for systems scored on one test set, Koehn 2004): questions are resampled with replacement and
  the mean difference of their scores recomputed, ``samples`` times. One file a side, the
  interval is about the questions only: two trained models, held fixed. When a side has several
  files (seeds), each resample also draws that side's seeds with replacement (a two-level
  bootstrap over seeds and questions; Bouthillier et al. 2021, "Accounting for variance in
  machine learning benchmarks"), so the interval carries the training noise too.
* **Right** (for the disagreement counts): a question's score is above 0.5. For VQA accuracy that
  is at least two of ten annotators agreeing (0.6 and up); for exact match, the answer matches;
  for several files, the mean score over them (with 0/1 scores: most of the seeds are right).
* **Per category**: the axes the benchmark reports (VQA: ``answer_type``, ``question_type``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vqa._io import read_json
from vqa.benchmark import QuestionScores, question_scores
from vqa.data.answers import EvalVersion
from vqa.data.datasets import detect_format, get_format
from vqa.data.scoring import percent

RIGHT = 0.5  # a question is right when its score is above this (see the module docstring)
EXAMPLES = 5  # question ids printed per direction of disagreement


def paired_bootstrap(differences: np.ndarray, samples: int = 10000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of per-question ``differences`` (Q,), resampling the
    questions with replacement ``samples`` times (generator ``numpy.random.default_rng(seed)``).

    Resampling Q question indices and averaging their differences depends only on how often each
    distinct difference value is drawn, which is Multinomial(Q, each value's share of the
    questions): the same distribution, drawn as (samples, distinct values) counts instead of
    (samples, Q) indices, so VQA v2's 214k questions take megabytes, not gigabytes.
    """
    if samples < 1 or len(differences) == 0:
        raise ValueError(f"the bootstrap needs questions and samples >= 1 (got {len(differences)} "
                         f"questions, {samples} samples)")
    d = np.asarray(differences, np.float64)[:, None]  # (Q, 1)
    return percentile_interval(question_means(d, samples, np.random.default_rng(seed))[:, 0], level)


def question_means(scores: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(Q, K) scores -> (samples, K): each column's mean over Q questions drawn with replacement,
    one draw of questions shared by the columns. Drawn as counts of each distinct row."""
    rows, counts = np.unique(scores, axis=0, return_counts=True)  # (U, K), (U,)
    n = len(scores)
    chunk = max(1, (1 << 22) // len(rows))  # (chunk, U) int64 counts at a time
    return np.concatenate([rng.multinomial(n, counts / n, size=min(chunk, samples - start))
                           @ rows / n for start in range(0, samples, chunk)])  # (samples, K)


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap draws (S,), by percentiles."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def seeds_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 10000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of B - A when each system is several runs: ``a`` (k_a, Q) and ``b``
    (k_b, Q) per-question scores. Each resample draws Q questions (the same for every run) and,
    per system, k runs with replacement; the difference is that resample's mean score of B's
    drawn runs minus A's.

    The questions are drawn as in ``paired_bootstrap``; the runs as counts of each run.
    """
    k_a, k_b = len(a), len(b)
    if samples < 1 or k_a == 0 or k_b == 0 or a.shape[1] == 0:
        raise ValueError(f"the bootstrap needs runs on both sides, questions and samples >= 1 "
                         f"(got {k_a} and {k_b} runs, {a.shape[1]} questions, {samples} samples)")
    rng = np.random.default_rng(seed)
    scores = np.concatenate([a, b]).T.astype(np.float64)  # (Q, k_a + k_b)
    run_means = question_means(scores, samples, rng)  # (S, k_a + k_b)
    w_a = rng.multinomial(k_a, np.full(k_a, 1 / k_a), size=samples) / k_a  # (S, k_a) run weights
    w_b = rng.multinomial(k_b, np.full(k_b, 1 / k_b), size=samples) / k_b  # (S, k_b)
    diffs = (w_b * run_means[:, k_a:]).sum(1) - (w_a * run_means[:, :k_a]).sum(1)  # (S,)
    return percentile_interval(diffs, level)


def answered_ids(path: str | os.PathLike, key: str) -> set[Any]:
    """The question ids (``key`` values) a results file answers."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of results with {key!r}")
    return {r[key] for r in data if isinstance(r, dict) and isinstance(r.get(key), int | str)}


def check_same_questions(files: Sequence[str | os.PathLike], key: str) -> None:
    """Every results file answers the same question ids as the first; else an error naming the
    file that differs."""
    first = answered_ids(files[0], key)
    for path in files[1:]:
        ids = answered_ids(path, key)
        missing, extra = sorted(first - ids, key=str), sorted(ids - first, key=str)
        if missing or extra:
            parts = ([f"lacks {len(missing)} of its questions, e.g. {missing[:EXAMPLES]}"]
                     if missing else []) + (
                [f"answers {len(extra)} others, e.g. {extra[:EXAMPLES]}"] if extra else [])
            raise ValueError(f"{path}: does not cover the same question ids as {files[0]}: "
                             + "; ".join(parts))


def compare(questions: str | os.PathLike, annotations: str | os.PathLike | None,
            a: Sequence[str | os.PathLike], b: Sequence[str | os.PathLike],
            dataset: str | None = None, version: EvalVersion = "current", samples: int = 10000,
            seed: int = 0) -> dict[str, Any]:
    """Compare system ``a`` with system ``b`` (each: one or more results files) on a split.

    Returns a JSON-ready dict: each system's accuracy and files, ``difference`` (B - A, points)
    and its ``ci95``, the disagreements (``a_right_b_wrong``, ``b_right_a_wrong``: count and
    every question id) and ``per`` axis and category: A, B, difference and n.
    """
    if not a or not b:
        raise ValueError("give at least one results file for each system (--a, --b)")
    fmt = get_format(dataset) if dataset else detect_format(questions, annotations)
    files = [*a, *b]
    check_same_questions(files, fmt.id_field)
    qs = question_scores(questions, annotations, files, fmt.name, version)
    runs_a, runs_b = np.stack(qs.scores[:len(a)]), np.stack(qs.scores[len(a):])  # (k, Q)
    sa, sb = runs_a.mean(0), runs_b.mean(0)  # (Q,) a question's mean over the seeds
    n = len(sa)
    several = len(a) > 1 or len(b) > 1
    low, high = (seeds_bootstrap(runs_a, runs_b, samples, seed) if several
                 else paired_bootstrap(sb - sa, samples, seed))
    right_a, right_b = sa > RIGHT, sb > RIGHT
    return {
        "dataset": fmt.name, "metric": fmt.scorer(version).metric, "reproduces": qs.reproduces,
        "num_questions": n,
        "a": {"files": [str(f) for f in a], "accuracy": percent(sa.tolist())},
        "b": {"files": [str(f) for f in b], "accuracy": percent(sb.tolist())},
        "difference": 100 * float(sb.sum() - sa.sum()) / n,
        "ci95": [100 * low, 100 * high],
        "ci_contains_zero": bool(low <= 0 <= high),
        "bootstrap": {"samples": samples, "seed": seed,
                      "method": "paired percentile bootstrap over questions"
                      + (" and each system's files (seeds)" if several else "")},
        "right": f"score > {RIGHT} (several files: their mean score)",
        "a_right_b_wrong": _disagreement(qs, right_a & ~right_b),
        "b_right_a_wrong": _disagreement(qs, right_b & ~right_a),
        "per": _per_category(qs, sa, sb),
    }


def _disagreement(qs: QuestionScores, mask: np.ndarray) -> dict[str, Any]:
    ids = [qs.ids[i] for i in np.flatnonzero(mask)]
    return {"count": len(ids), "question_ids": ids}


def _per_category(qs: QuestionScores, sa: np.ndarray, sb: np.ndarray
                  ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per axis and category: A's and B's accuracy (rounded as the benchmark rounds), B - A and
    the number of questions."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, labels in qs.categories.items():
        codes = {c: i for i, c in enumerate(sorted({c for c in labels if c is not None}))}
        code = np.array([codes.get(c, -1) for c in labels], np.int64)  # (Q,) -1: no category
        out[axis] = {}
        for category, i in codes.items():
            mask = code == i
            a, b = sa[mask], sb[mask]
            out[axis][category] = {"a": percent(a.tolist()), "b": percent(b.tolist()),
                                   "difference": 100 * float(b.sum() - a.sum()) / len(a),
                                   "n": int(mask.sum())}
    return out


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as plain text: accuracies, the difference and its interval, the
    disagreements with example ids, and the difference per category."""
    name = "VQA accuracy" if result["metric"] == "vqa_acc" else "accuracy"
    low, high = result["ci95"]

    def files(system: dict[str, Any]) -> str:
        k = len(system["files"])
        return system["files"][0] if k == 1 else f"{k} files, a question's mean score"

    boot = result["bootstrap"]
    lines = [f"{result['dataset']}: {name} ({result['num_questions']} questions), reproducing "
             f"{result['reproduces']}",
             f"  A      {result['a']['accuracy']:6.2f}  ({files(result['a'])})",
             f"  B      {result['b']['accuracy']:6.2f}  ({files(result['b'])})",
             f"  B - A  {result['difference']:+6.2f}  95% CI [{low:+.2f}, {high:+.2f}] "
             f"({boot['method'].replace('percentile ', '')}, {boot['samples']} samples, "
             f"seed {boot['seed']}): "
             + ("contains 0, no clear difference" if result["ci_contains_zero"]
                else "excludes 0"),
             f"  right: {result['right']}"]
    for key, text in (("a_right_b_wrong", "A right, B wrong"), ("b_right_a_wrong",
                                                                "B right, A wrong")):
        d = result[key]
        lines.append(f"    {text}: {d['count']} questions"
                     + (f", e.g. {d['question_ids'][:EXAMPLES]}" if d["count"] else ""))
    for axis, categories in result["per"].items():
        width = max([len(c) for c in categories] + [len(axis)])
        lines.append(f"  {axis.replace('_', ' '):<{width}}       A       B   B - A        n")
        lines += [f"  {c:<{width}}  {v['a']:6.2f}  {v['b']:6.2f}  {v['difference']:+6.2f}  "
                  f"{v['n']:7d}" for c, v in categories.items()]
    return "\n".join(lines)
