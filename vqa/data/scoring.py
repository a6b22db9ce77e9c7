"""How a benchmark scores an answer: the vocabulary form of answers, the per-question score, and the
soft targets that make the training metric equal the benchmark's number.

A ``Scorer`` answers three questions for its benchmark:

* ``normalize(answer)``: the form answers take in the answer vocabulary;
* ``score(prediction, answers)``: the benchmark's per-question score in [0, 1];
* ``targets(answers)``: every answer scoring above zero, keyed by ``form(prediction)``: a vocabulary
  answer ``a`` then scores ``scores.get(form(a), 0)``, which equals ``score(a, answers)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from vqa.data.answers import EvalVersion, answer_scores, clean, normalize_answer, vqa_accuracy

Targets = tuple[dict[str, float], Callable[[str], str]]


def percent(scores: Sequence[float], digits: int = 2) -> float:
    """The official scripts' rounding of a mean score: ``round(100 * sum / n, digits)``, the sum
    taken by Python in question order (0 for no questions)."""
    return round(100 * float(sum(scores)) / max(len(scores), 1), digits)


class Scorer(Protocol):
    """A benchmark's scoring (see the module docstring). ``metric`` names the logged metric
    (``vqa_acc``, ``acc``); ``reproduces`` says which evaluation code the numbers reproduce."""

    metric: str
    reproduces: str

    def normalize(self, answer: str) -> str: ...

    def score(self, prediction: str, answers: Sequence[str]) -> float: ...

    def targets(self, answers: Sequence[str]) -> Targets: ...


def _same(text: str) -> str:
    return text


class ExactMatch:
    """Exact-match accuracy against one reference answer, the strings compared as they are
    (GQA's ``eval.py``, CLEVR)."""

    metric = "acc"

    def __init__(self, reproduces: str = "exact match") -> None:
        self.reproduces = reproduces

    def normalize(self, answer: str) -> str:
        return answer

    def score(self, prediction: str, answers: Sequence[str]) -> float:
        return float(bool(answers) and prediction == answers[0])

    def targets(self, answers: Sequence[str]) -> Targets:
        return ({answers[0]: 1.0} if answers else {}), _same


class VQAScore:
    """The official VQA accuracy (``vqaEval.py``, release ``version``; ``vqa.data.answers``)."""

    metric = "vqa_acc"

    def __init__(self, version: EvalVersion = "current", reproduces: str | None = None) -> None:
        self.version = version
        self.reproduces = reproduces or f"the official VQA evaluation (vqaEval.py, release '{version}')"

    def normalize(self, answer: str) -> str:
        return normalize_answer(answer)

    def score(self, prediction: str, answers: Sequence[str]) -> float:
        if len(answers) == 1:  # one reference answer (COCO-QA): a match after normalisation
            return float(normalize_answer(prediction) == normalize_answer(answers[0]))
        return vqa_accuracy(prediction, answers, self.version)

    def targets(self, answers: Sequence[str]) -> Targets:
        if not answers:
            return {}, clean
        return answer_scores(answers, self.version)
