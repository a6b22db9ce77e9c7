"""``Example``: one question of any dataset, joined with its annotation, and where its image is.

Every dataset format (``vqa.data.datasets``) reads its release into ``Example`` lists; everything
downstream (preprocessing, metrics, results files) reads only these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")
HUMAN_ANSWERS = 10
COCO_TEMPLATE = "COCO_{data_subtype}_{image_id:012d}.jpg"


@dataclass(frozen=True)
class Example:
    """One question, joined with its annotation when the split has one.

    ``image_id`` identifies the image: a COCO id, or (datasets that name images by file) the file
    name's stem. ``image_file`` is the image's path under the split's ``images`` folder when the
    dataset names it (otherwise the split's ``image_template`` gives it). ``types`` holds the
    categories the benchmark reports accuracy per (``{"answer_type": "yes/no"}``, GQA's
    ``{"structural": ..., "semantic": ...}``). ``answerable`` is VizWiz's answerability label.
    """

    question_id: int
    image_id: int | str
    question: str
    answers: tuple[str, ...] = ()
    answer_type: str | None = None
    question_type: str | None = None
    multiple_choice_answer: str | None = None
    multiple_choices: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    image_file: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    answerable: bool | None = None


def image_path(ex: Example, images: str | os.PathLike, template: str = COCO_TEMPLATE,
               data_subtype: str | None = None) -> Path:
    """The image file of an example: its ``image_file``, or ``template`` formatted with its
    ``image_id`` and ``data_subtype``, under ``images``."""
    return Path(images) / (ex.image_file or template.format(image_id=ex.image_id,
                                                            data_subtype=data_subtype))


def image_paths(examples: list[Example], images: str | os.PathLike,
                template: str = COCO_TEMPLATE, data_subtype: str | None = None
                ) -> dict[int | str, Path]:
    """Image file per image id (the example's ``image_file``, or ``template`` formatted with
    ``image_id`` and ``data_subtype``); a missing file is an error naming the file and a question
    that needs it."""
    out: dict[int | str, Path] = {}
    for ex in examples:
        if ex.image_id in out:
            continue
        path = image_path(ex, images, template, data_subtype)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {ex.image_id} not found (needed by question_id "
                                    f"{ex.question_id}); check the images folder and template")
        out[ex.image_id] = path
    return out


