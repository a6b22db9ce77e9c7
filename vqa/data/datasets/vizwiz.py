"""VizWiz-VQA (Gurari et al. 2018): questions blind people asked about photos they took.

Each of ``train.json``, ``val.json``, ``test.json`` is a JSON list of ``{"image":
"VizWiz_val_00000000.jpg", "question", "answers": [10 x {"answer", "answer_confidence"}],
"answer_type": "yes/no" | "number" | "other" | "unanswerable", "answerable": 0 | 1}`` (test
entries hold only ``image`` and ``question``); images are ``{split}/VizWiz_{split}_{8 digits}.jpg``.
A question is named by its image (one question per image): results are ``[{"image", "answer"}]``,
plus ``"answerable"`` (probability) for the answerability task. Question ids are ours:
``10**8 * split + number`` (train 0, val 1, test 2), unique across splits.

Scoring reproduces the VizWiz API's ``vqaEval.py``: the prediction is always normalised (VQA
punctuation, number words, articles, and contractions written with ``’``), the ten human answers are
compared as written, and the accuracy is the mean over the ten leave-one-out subsets of
``min(1, matches / 3)``. ``unanswerable`` is an answer like any other, reported as its own answer
type. Answerability is scored as that script's ``evaluate_unanswerability``: average precision of
"unanswerable" (1 - answerable) against the predicted ``1 - answerable``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from vqa._io import read_json
from vqa.data.answers import (
    ARTICLES,
    CONTRACTIONS,
    NUMBERS,
    accuracy_from_matches,
    clean,
    process_punctuation,
)
from vqa.data.example import HUMAN_ANSWERS, Example
from vqa.data.format import DataFormat, first, require_text
from vqa.data.hooks import Answerability
from vqa.data.scoring import Targets

SPLITS = {"train": 0, "val": 1, "test": 2}
ANSWER_TYPES = ("yes/no", "number", "other", "unanswerable")
IMAGE_NAME = re.compile(r"VizWiz_(train|val|test)_(\d+)\.(jpg|jpeg|png)")
# VizWiz's contraction table is VQA's with typographic apostrophes, except these entries.
_STRAIGHT_VALUE_KEYS = {"aint", "arent", "cant", "couldve", "couldnt", "weve", "wheres", "whove"}
_STRAIGHT_KEYS = {"couldn'tve", "hadn'tve"}
VIZWIZ_CONTRACTIONS = {
    (k if k in _STRAIGHT_KEYS else k.replace("'", "’")):
    (v if k in _STRAIGHT_VALUE_KEYS else v.replace("'", "’")) for k, v in CONTRACTIONS.items()}


@lru_cache(maxsize=1 << 16)
def normalize(answer: str) -> str:
    """What VizWiz's evaluation does to a prediction."""
    words = [NUMBERS.get(w, w) for w in process_punctuation(clean(answer)).lower().split()]
    return " ".join(VIZWIZ_CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


class VizWizScore:
    """VizWiz-VQA accuracy (see the module docstring)."""

    metric = "vqa_acc"
    reproduces = ("the VizWiz-VQA evaluation (VizWiz API vqaEval.py: prediction normalised, "
                  "human answers as written)")

    def normalize(self, answer: str) -> str:
        return normalize(answer)

    def score(self, prediction: str, answers: Sequence[str]) -> float:
        pred = normalize(prediction)
        return accuracy_from_matches(sum(a == pred for a in answers), len(answers))

    def targets(self, answers: Sequence[str]) -> Targets:
        return {a: accuracy_from_matches(k, len(answers))
                for a, k in Counter(answers).items()}, normalize


def read(questions: str, annotations: str | None = None) -> tuple[list[Example], None]:
    """Read one VizWiz annotation file (``annotations`` is unused: they are in the same file)."""
    data = read_json(questions)
    if not isinstance(data, list):
        raise ValueError(f"{questions}: expected a JSON list of {{'image', 'question', ...}} "
                         "objects (VizWiz-VQA)")
    examples, seen = [], set()
    for i, rec in enumerate(data):
        where = f"{questions}: entry {i}"
        if not isinstance(rec, dict):
            raise ValueError(f"{where} should be an object")
        image = rec.get("image")
        m = IMAGE_NAME.fullmatch(image) if isinstance(image, str) else None
        if m is None:
            raise ValueError(f"{where} has image {image!r}; expected a name like "
                             "'VizWiz_val_00000000.jpg'")
        where = f"{questions}: image {image}"
        if image in seen:
            raise ValueError(f"{where} appears more than once")
        seen.add(image)
        require_text(where, rec, ("question",))
        answers, answer_type, answerable = _annotation(where, rec)
        examples.append(Example(
            SPLITS[m.group(1)] * 10**8 + int(m.group(2)), Path(image).stem, rec["question"],
            answers, answer_type, None, _most_common(answers),
            extra={k: v for k, v in rec.items() if k not in ("question", "answers")},
            image_file=image, types={"answer_type": answer_type} if answer_type else {},
            answerable=answerable))
    return examples, None


def _annotation(where: str, rec: dict[str, Any]) -> tuple[tuple[str, ...], str | None, bool | None]:
    """The answers, answer type and answerability of an entry (none for the test split)."""
    if "answers" not in rec:
        return (), None, None
    answers = rec["answers"]
    if not isinstance(answers, list) or len(answers) != HUMAN_ANSWERS or not all(
            isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
        n = len(answers) if isinstance(answers, list) else type(answers).__name__
        raise ValueError(f"{where} has answers {n}; expected a list of {HUMAN_ANSWERS} "
                         "{'answer', 'answer_confidence'} objects")
    answer_type = rec.get("answer_type")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"{where} has answer_type {answer_type!r}; expected one of "
                         f"{list(ANSWER_TYPES)}")
    answerable = rec.get("answerable")
    if answerable not in (0, 1) or not isinstance(answerable, int) or isinstance(answerable, bool):
        raise ValueError(f"{where} has answerable {answerable!r}; expected 0 or 1")
    return tuple(a["answer"] for a in answers), answer_type, bool(answerable)


def _most_common(answers: Sequence[str]) -> str | None:
    """The most frequent normalised answer (the first seen on ties): the training answer."""
    return Counter(map(normalize, answers)).most_common(1)[0][0] if answers else None


def _detect(data: Any, annotations: str | None = None) -> bool:
    entry = first(data)
    return isinstance(data, list) and isinstance(entry, dict) and "image" in entry \
        and "question" in entry and "question_id" not in entry


def _scorer(version: str = "current") -> VizWizScore:  # one release
    return VizWizScore()


FORMAT = DataFormat("vizwiz", read, _scorer, _detect, id_field="image",
                    result_id=lambda ex: ex.image_file, image_ids="name",
                    hooks=(Answerability("unanswerable"),))
