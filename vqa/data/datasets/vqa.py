"""VQA v1 / v2 (Antol et al. 2015; Goyal et al. 2017): ``vqa.data.formats.load_vqa``, scored with the
official VQA accuracy. The shapes dataset is written in this format too."""

from __future__ import annotations

from typing import Any

from vqa.data.datasets import DataFormat
from vqa.data.formats import load_vqa
from vqa.data.scoring import VQAScore


def detect(data: Any, annotations: str | None = None) -> bool:
    """A ``{"questions": [{"question_id", "image_id", ...}]}`` file."""
    qs = data.get("questions") if isinstance(data, dict) else None
    return isinstance(qs, list) and bool(qs) and isinstance(qs[0], dict) \
        and "question_id" in qs[0] and "image_id" in qs[0]


FORMAT = DataFormat("vqa", load_vqa, VQAScore, detect)
