"""COCO-QA (Ren et al. 2015): ``vqa.data.formats.load_cocoqa`` on a split folder of text files; one
answer per question, matched after the VQA normalisation of answers; reported per question type
(object, number, color, location), as the COCO-QA papers report it."""

from __future__ import annotations

from typing import Any

from vqa.data.datasets import DataFormat
from vqa.data.formats import load_cocoqa
from vqa.data.scoring import VQAScore


def _read(questions: str, annotations: str | None) -> tuple[list, None]:
    return load_cocoqa(questions), None


def _detect(data: Any, annotations: str | None = None) -> bool:
    return data is None  # a folder


def _scorer(version: str = "current") -> VQAScore:
    return VQAScore(version, "COCO-QA accuracy (exact match after the VQA answer normalisation)")


FORMAT = DataFormat("cocoqa", _read, _scorer, _detect)
