"""Scoring a results file as each dataset's own benchmark scores it (``vqa evaluate``).

The dataset is recognised from its files (``vqa.data.datasets.detect_format``) or named. VQA v1 / v2
go through the fast official evaluator (``vqa.evaluation``); every other format reads its files
with its loader, its results file in its own layout, and scores each question with its scorer
(``vqa.data.scoring``). Percentages are rounded as the official scripts round:
``round(100 * mean, 2)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqa._io import read_json
from vqa.data.answers import EvalVersion
from vqa.data.datasets import detect_format, get_format
from vqa.data.example import Example
from vqa.data.format import DataFormat
from vqa.data.scoring import percent


def evaluate_files(questions: str | os.PathLike, annotations: str | os.PathLike | None,
                   results: str | os.PathLike, dataset: str | None = None,
                   version: EvalVersion = "current") -> dict[str, Any]:
    """Score ``results`` against a dataset's files; ``dataset`` names the format (default:
    recognised from the files)."""
    fmt = get_format(dataset) if dataset else detect_format(questions, annotations)
    if fmt.name == "vqa":
        from vqa.evaluation import evaluate

        if annotations is None:
            raise ValueError(f"{questions}: VQA questions are scored against an annotations "
                             "file (--annotations)")
        metrics = evaluate(questions, annotations, results, version)
        per = {"answer_type": metrics["perAnswerType"], "question_type": metrics["perQuestionType"]}
        return {"dataset": "vqa", "reproduces": fmt.scorer(version).reproduces,
                "metric": "vqa_acc", **metrics, "per": per}
    examples = _annotated(fmt, questions, annotations)
    return score_results(fmt, examples, read_results(results, fmt, examples), version)


@dataclass(frozen=True)
class QuestionScores:
    """Each scored question's benchmark score, for one or more results files of the same split.

    Attributes:
        fmt: the dataset format.
        ids: each question's id as results files name it (``fmt.result_id``), in the order of
            the questions file.
        scores: one (Q,) array per results file, each question's score in [0, 1].
        categories: per axis the benchmark reports (``answer_type``, ``question_type``; GQA's
            ``structural``, ``semantic``), each question's category (``None``: none on that axis).
        reproduces: which evaluation code the scores reproduce.
    """

    fmt: DataFormat
    ids: list[Any]
    scores: list[np.ndarray]
    categories: dict[str, list[str | None]]
    reproduces: str


def question_scores(questions: str | os.PathLike, annotations: str | os.PathLike | None,
                    results: Sequence[str | os.PathLike], dataset: str | None = None,
                    version: EvalVersion = "current") -> QuestionScores:
    """The score of every question the benchmark scores, per results file, as ``evaluate_files``
    scores them (its overall number is ``percent`` of a file's scores); the dataset's files are
    read once."""
    fmt = get_format(dataset) if dataset else detect_format(questions, annotations)
    reproduces = fmt.scorer(version).reproduces
    if fmt.name == "vqa":
        from vqa.evaluation import question_scores as vqa_scores

        if annotations is None:
            raise ValueError(f"{questions}: VQA questions are scored against an annotations "
                             "file (--annotations)")
        ids, scores, categories = vqa_scores(questions, annotations, results, version)
        return QuestionScores(fmt, ids, scores, dict(categories), reproduces)
    examples = _annotated(fmt, questions, annotations)
    scored = [ex for ex in examples if fmt.scored(ex)]
    scores = [np.array(_scores(fmt, scored, read_results(r, fmt, examples), version), np.float64)
              for r in results]
    axes = dict.fromkeys(k for ex in scored for k in ex.types)
    return QuestionScores(fmt, [fmt.result_id(ex) for ex in scored], scores,
                          {axis: [ex.types.get(axis) for ex in scored] for axis in axes},
                          reproduces)


def _annotated(fmt: DataFormat, questions: str | os.PathLike,
               annotations: str | os.PathLike | None) -> list[Example]:
    """A split's examples, every one with answers to score against."""
    examples, _ = fmt.read(str(questions), None if annotations is None else str(annotations))
    unanswered = [ex for ex in examples if not ex.answers]
    if unanswered:
        raise ValueError(f"{questions}: question {fmt.result_id(unanswered[0])} has no answer to "
                         "score against (a test split?)")
    return examples


def _scores(fmt: DataFormat, scored: Sequence[Example], results: dict[int, dict[str, Any]],
            version: EvalVersion) -> list[float]:
    """The benchmark's score of each of the ``scored`` examples."""
    scorer = fmt.scorer(version)
    return [scorer.score(results[ex.question_id][fmt.answer_field], ex.answers) for ex in scored]


def read_results(path: str | os.PathLike, fmt: DataFormat, examples: Sequence[Example]
                 ) -> dict[int, dict[str, Any]]:
    """A results file in the format's layout (``[{id_field, answer_field, ...}]``), by question
    id; it must answer every question exactly once and name no other."""
    data = read_json(path)
    key, field = fmt.id_field, fmt.answer_field
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{{key!r}, {field!r}}} objects")
    known = {fmt.result_id(ex): ex.question_id for ex in examples}
    if len(known) != len(examples):
        raise ValueError(f"{path}: the questions' {key!r} values repeat (several splits read as "
                         "one?); score each split's results on its own")
    out: dict[int, dict[str, Any]] = {}
    for i, r in enumerate(data):
        if not isinstance(r, dict) or not isinstance(r.get(key), int | str) or isinstance(
                r[key], bool):
            raise ValueError(f"{path}: entry {i} is not an object with a {key!r} (a number or "
                             "string)")
        where = f"{path}: {key} {r[key]!r}"
        if not isinstance(r.get(field), str):
            raise ValueError(f"{where} has no string {field!r}")
        if "answerable" in r and (not isinstance(r["answerable"], int | float)
                                  or isinstance(r["answerable"], bool)):
            raise ValueError(f"{where}: 'answerable' should be a number (a probability)")
        if r[key] not in known:
            raise ValueError(f"{where} is not a question of the dataset's files")
        if known[r[key]] in out:
            raise ValueError(f"{where} is answered more than once")
        out[known[r[key]]] = r
    missing = [ex for ex in examples if ex.question_id not in out]
    if missing:
        raise ValueError(f"{path}: {len(missing)} question(s) unanswered, e.g. "
                         f"{[fmt.result_id(ex) for ex in missing[:5]]}")
    return out


def score_results(fmt: DataFormat, examples: Sequence[Example], results: dict[int, dict[str, Any]],
                  version: EvalVersion = "current") -> dict[str, Any]:
    """Overall and per-category scores of the benchmark's scored questions, and (when every
    result carries ``answerable``) the average precision and F1 of unanswerability, as VizWiz's
    ``evaluate_unanswerability`` scores 1 - answerable."""
    scorer = fmt.scorer(version)
    scored = [ex for ex in examples if fmt.scored(ex)]
    scores = _scores(fmt, scored, results, version)
    per: dict[str, dict[str, float]] = {}
    for axis in dict.fromkeys(k for ex in scored for k in ex.types):
        groups: dict[str, list[float]] = {}
        for ex, s in zip(scored, scores, strict=True):
            if axis in ex.types:
                groups.setdefault(ex.types[axis], []).append(s)
        per[axis] = {k: percent(v) for k, v in sorted(groups.items())}
    out = {"dataset": fmt.name, "reproduces": scorer.reproduces, "metric": scorer.metric,
           "overall": percent(scores), "per": per, "num_questions": len(scored)}
    labelled = [ex for ex in scored if ex.answerable is not None]
    if labelled and all("answerable" in results[ex.question_id] for ex in labelled):
        unanswerable = np.array([not ex.answerable for ex in labelled], np.float64)
        predicted = np.array([1.0 - results[ex.question_id]["answerable"] for ex in labelled])
        out["unanswerable_ap"] = round(100 * average_precision(unanswerable, predicted), 2)
        out["unanswerable_f1"] = round(100 * f1(unanswerable, predicted > 0.5), 2)
    return out


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of ranking by ``scores`` (higher: more likely positive): the sum over
    distinct thresholds of (recall gained) x precision, as ``sklearn.metrics.average_precision_score``
    (which VizWiz's evaluation calls) computes it."""
    if labels.sum() == 0:  # sklearn (and torchmetrics) warn and give 0
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    y, s = labels[order], scores[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each distinct score
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1), tp / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of binary predictions (0 when nothing is predicted or nothing is positive, as sklearn's
    ``f1_score`` with its default ``zero_division``)."""
    tp = float(np.sum((labels == 1) & predicted))
    denominator = float(np.sum(labels == 1) + np.sum(predicted))
    return 2 * tp / denominator if denominator else 0.0


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table: overall, then each category; the first line says what it reproduces."""
    name = "VQA accuracy" if metrics["metric"] == "vqa_acc" else "accuracy"
    rows = [("overall", metrics["overall"])]
    if "unanswerable_ap" in metrics:
        rows.append(("unanswerable average precision", metrics["unanswerable_ap"]))
        rows.append(("unanswerable F1 (1 - answerable > 0.5)", metrics["unanswerable_f1"]))
    for axis, values in metrics["per"].items():
        rows += [(f"{axis.replace('_', ' ')}: {k}", v) for k, v in sorted(values.items())]
    width = max(len(r[0]) for r in rows)
    lines = [f"{metrics['dataset']}: {name} ({metrics['num_questions']} questions), reproducing "
             f"{metrics['reproduces']}"]
    lines += [f"  {k:<{width}}  {v:6.2f}" for k, v in rows]
    return "\n".join(lines)
