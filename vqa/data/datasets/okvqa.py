"""OK-VQA (Marino et al. 2019): questions whose answers need outside knowledge, on COCO images.

The release is in the VQA format (``vqa.data.datasets.vqa.load_vqa``):
``OpenEnded_mscoco_{train,val}2014_questions.json`` and ``mscoco_{train,val}2014_annotations.json``,
whose 10 ``answers`` per question are 5 annotators' answers each given twice, with a ``raw_answer``
beside each ``answer``, and no ``multiple_choice_answer``: the training answer is the most common
answer (the first on ties). ``question_type`` is the knowledge category (``one`` ... ``ten``,
``other``), reported under short names; ``answer_type`` is always ``other``. Scored with the
official VQA accuracy (as OK-VQA is), so 1 of 5 annotators agreeing scores 0.6, 2 or more 1.0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from vqa._io import read_json
from vqa.data.datasets.vqa import detect as vqa_files
from vqa.data.datasets.vqa import join_vqa, vqa_records
from vqa.data.example import Example
from vqa.data.format import DataFormat
from vqa.data.scoring import VQAScore

CATEGORIES = {"one": "vehicles_transportation", "two": "brands_companies_products",
              "three": "objects_material_clothing", "four": "sports_recreation",
              "five": "cooking_food", "six": "geography_history_language_culture",
              "seven": "people_everyday_life", "eight": "plants_animals",
              "nine": "science_technology", "ten": "weather_climate", "other": "other"}


def read(questions: str, annotations: str | None) -> tuple[list[Example], str | None]:
    """Read and join an OK-VQA questions file and (unless a test-style split) its annotations."""
    data = read_json(questions)
    qs = vqa_records(questions, _wrapped(questions, data, "questions"), "questions")
    anns = None
    if annotations is not None:
        records = _wrapped(annotations, read_json(annotations), "annotations")
        for rec in records:
            if isinstance(rec, dict) and "multiple_choice_answer" not in rec:
                rec["multiple_choice_answer"] = _most_common(rec.get("answers"))
        anns = vqa_records(annotations, records, "annotations")
    examples = join_vqa(questions, qs, annotations, anns)
    for ex in examples:
        if ex.question_type is not None and ex.question_type not in CATEGORIES:
            raise ValueError(f"{annotations}: question_id {ex.question_id} has question_type "
                             f"{ex.question_type!r}; OK-VQA's are {list(CATEGORIES)}")
    return [replace(ex, types={"category": CATEGORIES[ex.question_type]})
            if ex.question_type else ex for ex in examples], data.get("data_subtype")


def _wrapped(path: str, data: Any, key: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
    return data[key]


def _most_common(answers: Any) -> Any:
    """The most common answer (the first on ties); ``""`` when the answers are malformed (the
    record's validation then names the problem)."""
    if not isinstance(answers, list) or not answers or not all(
            isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
        return ""
    return Counter(a["answer"] for a in answers).most_common(1)[0][0]


def _detect(data: Any, annotations: str | None = None) -> bool:
    """VQA-format files whose annotations carry OK-VQA's ``raw_answer`` (looked for in the
    annotations file's first megabyte: its first annotations)."""
    if not vqa_files(data) or annotations is None:
        return False
    with open(annotations, "rb") as f:
        return b'"raw_answer"' in f.read(1 << 20)


FORMAT = DataFormat("okvqa", read, VQAScore, _detect, refines="vqa")
