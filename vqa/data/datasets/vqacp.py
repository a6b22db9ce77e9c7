"""VQA-CP v2 (Agrawal et al. 2018): VQA v2 re-split so that each question type's answer
distribution differs between train and test.

``vqacp_v2_{train,test}_questions.json`` is a JSON list of ``{"image_id", "question",
"question_id", "coco_split": "train2014" | "val2014"}``; ``vqacp_v2_{train,test}_annotations.json``
a list of VQA v2 annotations (``question_type``, ``answer_type``, ``multiple_choice_answer``, 10
``answers``) with the same ``coco_split``. Both splits draw on both COCO folders: with ``images``
the folder holding ``train2014/`` and ``val2014/``, an image is
``{coco_split}/COCO_{coco_split}_{image_id:012d}.jpg``. Scored with the official VQA accuracy,
per answer type (as VQA-CP papers report it); results are ``[{"question_id", "answer"}]``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vqa._io import read_json
from vqa.data.datasets.vqa import join_vqa, vqa_records
from vqa.data.example import COCO_TEMPLATE, Example
from vqa.data.format import DataFormat, first
from vqa.data.scoring import VQAScore

COCO_SPLITS = ("train2014", "val2014")


def read(questions: str, annotations: str | None) -> tuple[list[Example], None]:
    """Read and join a VQA-CP questions file and (unless a test-style split) its annotations."""
    qs = vqa_records(questions, read_json(questions), "questions")
    anns = None if annotations is None else vqa_records(
        annotations, read_json(annotations), "annotations")
    examples = []
    for ex in join_vqa(questions, qs, annotations, anns):
        split = qs[ex.question_id].get("coco_split")
        if split not in COCO_SPLITS:
            raise ValueError(f"{questions}: question_id {ex.question_id} has coco_split "
                             f"{split!r}; expected one of {list(COCO_SPLITS)}")
        if anns is not None and anns[ex.question_id].get("coco_split", split) != split:
            raise ValueError(f"{annotations}: question_id {ex.question_id} has coco_split "
                             f"{anns[ex.question_id]['coco_split']!r}, but {questions} says "
                             f"{split!r}")
        image = f"{split}/" + COCO_TEMPLATE.format(data_subtype=split, image_id=ex.image_id)
        examples.append(replace(ex, image_file=image))
    return examples, None


def _detect(data: Any, annotations: str | None = None) -> bool:
    entry = first(data)
    return isinstance(data, list) and isinstance(entry, dict) and "coco_split" in entry \
        and "question_id" in entry


FORMAT = DataFormat("vqacp", read, VQAScore, _detect)
