"""``Split``: one split of a dataset on disk, as a config names it (``data.train``, ``data.val``...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vqa._io import file_key
from vqa.data.datasets import get_format
from vqa.data.example import COCO_TEMPLATE, Example
from vqa.data.format import DataFormat


@dataclass
class Split:
    """One split of a dataset on disk.

    Args:
        questions: the questions file (VQA: questions JSON; GQA: ``*_balanced_questions.json``;
            VizWiz: ``train.json`` ...; COCO-QA: the split folder).
        annotations: the annotations file of formats that keep them apart (VQA, VQA-CP, OK-VQA;
            ``None`` for test splits).
        images: folder of image files.
        image_template: file name per image, formatted with ``image_id`` and ``data_subtype``
            (formats that name their image files ignore it).
        format: the dataset format (``vqa.data.datasets``): ``vqa`` (VQA v1 / v2, open-ended or
            multiple choice), ``cocoqa``, ``vqacp``, ``vizwiz``, ``gqa``, ``clevr``, ``okvqa``.
        data_subtype: overrides the questions file's (COCO-QA has none: ``train2014``, ``val2014``).
        features: feature cache folder(s) (``vqa extract-features``); when given, the model reads
            cached grid features instead of images (an image is read from the first cache
            holding it).
        boxes: a boxes file (``vqa.data.boxes``) of candidate boxes per image, for a model whose
            image encoder pools region features over boxes (``vqa.models.BoxEncoder``).
    """

    questions: str
    annotations: str | None = None
    images: str | None = None
    image_template: str = COCO_TEMPLATE
    format: str = "vqa"
    data_subtype: str | None = None
    features: str | list[str] | None = None
    boxes: str | None = None

    def __post_init__(self) -> None:
        self.data_format()  # an unknown format fails here, naming the known ones

    def data_format(self) -> DataFormat:
        """The split's dataset format."""
        return get_format(self.format)

    @property
    def feature_caches(self) -> list[str]:
        """The feature cache folders (none: the split reads images)."""
        return [self.features] if isinstance(self.features, str) else list(self.features or [])

    def load(self) -> tuple[list[Example], str | None]:
        """The split's examples and data subtype."""
        examples, subtype = self.data_format().read(self.questions, self.annotations)
        return examples, self.data_subtype or subtype

    def key(self) -> list[Any]:
        """What the split's preprocessing depends on (see ``vqa.data.preprocess.cached``)."""
        return [self.format, file_key(self.questions),
                file_key(self.annotations) if self.annotations else None]
