"""COCO-QA (Ren et al. 2015): a split folder (``train/``, ``test/``) of line-aligned text files
``questions.txt``, ``answers.txt`` (one word), ``img_ids.txt`` (COCO ids) and ``types.txt`` (0
object, 1 number, 2 color, 3 location); one answer per question, matched after the VQA
normalisation of answers; reported per question type (object, number, color, location), as the
COCO-QA papers report it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vqa.data.example import Example
from vqa.data.format import DataFormat
from vqa.data.scoring import VQAScore

COCOQA_FILES = ("questions.txt", "answers.txt", "img_ids.txt", "types.txt")
COCOQA_TYPES = ("object", "number", "color", "location")


def load_cocoqa(folder: str | os.PathLike) -> list[Example]:
    """Read one COCO-QA split folder. Question ids are line numbers (COCO-QA has none); each
    question has its one answer, scored by exact match; the answer type is ``number`` for
    number questions and ``other`` otherwise."""
    folder = Path(folder)
    columns = []
    for name in COCOQA_FILES:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: COCO-QA file not found (a split folder holds "
                                    f"{', '.join(COCOQA_FILES)})")
        columns.append(path.read_text(encoding="utf-8").splitlines())
    if len({len(c) for c in columns}) != 1:
        sizes = ", ".join(f"{n}: {len(c)}" for n, c in zip(COCOQA_FILES, columns, strict=True))
        raise ValueError(f"{folder}: COCO-QA files differ in length ({sizes} lines)")
    examples = []
    for i, (question, answer, image_id, kind) in enumerate(zip(*columns, strict=True)):
        line = f"line {i + 1}"
        if not image_id.strip().isdigit():
            raise ValueError(f"{folder / 'img_ids.txt'}: {line}: expected a COCO image id, "
                             f"got {image_id!r}")
        if kind.strip() not in ("0", "1", "2", "3"):
            raise ValueError(f"{folder / 'types.txt'}: {line}: expected a type 0-3, got {kind!r}")
        if not answer.strip():
            raise ValueError(f"{folder / 'answers.txt'}: {line}: empty answer")
        if not question.strip():
            raise ValueError(f"{folder / 'questions.txt'}: {line}: empty question")
        qtype = COCOQA_TYPES[int(kind)]
        atype = "number" if qtype == "number" else "other"
        examples.append(Example(i, int(image_id), question.strip(), (answer.strip(),), atype,
                                qtype, answer.strip(), types={"question_type": qtype}))
    return examples


def _read(questions: str, annotations: str | None) -> tuple[list[Example], None]:
    return load_cocoqa(questions), None


def _detect(data: Any, annotations: str | None = None) -> bool:
    return data is None  # a folder


def _scorer(version: str = "current") -> VQAScore:
    return VQAScore(version, "COCO-QA accuracy (exact match after the VQA answer normalisation)")


FORMAT = DataFormat("cocoqa", _read, _scorer, _detect)
