"""OK-VQA (Marino et al. 2019): questions whose answers need outside knowledge, on COCO images.

The release is in the VQA format (``vqa.data.formats.load_vqa``):
``OpenEnded_mscoco_{train,val}2014_questions.json`` and ``mscoco_{train,val}2014_annotations.json``,
whose 10 ``answers`` per question are 5 annotators' answers each given twice, with a ``raw_answer``
beside each ``answer``. ``question_type`` is the knowledge category (``one`` ... ``ten``,
``other``), reported under short names; ``answer_type`` is always ``other``. Scored with the
official VQA accuracy (as OK-VQA is), so 1 of 5 annotators agreeing scores 0.6, 2 or more 1.0.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vqa.data.datasets import DataFormat
from vqa.data.datasets.vqa import detect as vqa_files
from vqa.data.formats import Example, load_vqa
from vqa.data.scoring import VQAScore

CATEGORIES = {"one": "vehicles_transportation", "two": "brands_companies_products",
              "three": "objects_material_clothing", "four": "sports_recreation",
              "five": "cooking_food", "six": "geography_history_language_culture",
              "seven": "people_everyday_life", "eight": "plants_animals",
              "nine": "science_technology", "ten": "weather_climate", "other": "other"}


def read(questions: str, annotations: str | None) -> tuple[list[Example], str | None]:
    examples, subtype = load_vqa(questions, annotations)
    for ex in examples:
        if ex.question_type is not None and ex.question_type not in CATEGORIES:
            raise ValueError(f"{annotations}: question_id {ex.question_id} has question_type "
                             f"{ex.question_type!r}; OK-VQA's are {list(CATEGORIES)}")
    return [replace(ex, types={"category": CATEGORIES[ex.question_type]})
            if ex.question_type else ex for ex in examples], subtype


def _detect(data: Any, annotations: str | None = None) -> bool:
    """VQA-format files whose annotations carry OK-VQA's ``raw_answer`` (looked for in the
    annotations file's first megabyte: its first annotations)."""
    if not vqa_files(data) or annotations is None:
        return False
    with open(annotations, "rb") as f:
        return b'"raw_answer"' in f.read(1 << 20)


FORMAT = DataFormat("okvqa", read, VQAScore, _detect, refines="vqa")
