"""Dataset formats (VQA, COCO-QA, VQA-CP, VizWiz, GQA, CLEVR, OK-VQA), answer scoring, the input
pipeline, datasets and the shapes generator.

Names are imported on first use, so that ``vqa.data.answers`` or ``vqa.data.datasets`` (what
``vqa evaluate`` needs) load without torch or Lightning.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "Split": "split", "VQADataModule": "datamodule", "CachedFeatures": "dataset",
    "ImageFiles": "dataset", "VQADataset": "dataset", "collate": "batch", "Batch": "batch",
    "ANSWER_TYPES": "example", "Example": "example", "image_paths": "example",
    "load_cocoqa": "datasets.cocoqa", "load_vqa": "datasets.vqa", "InputPipeline": "pipeline",
    "Preprocessed": "preprocess", "preprocess": "preprocess", "soft_targets": "preprocess",
    "PretrainedTokenizer": "tokenizers", "WordTokenizer": "tokenizers", "tokenize": "tokenizers",
    "Vocabulary": "vocab", "DataFormat": "format", "formats": "datasets",
    "get_format": "datasets", "detect_format": "datasets", "ExactMatch": "scoring",
    "VQAScore": "scoring",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'vqa.data' has no attribute {name!r}")
    return getattr(import_module(f"vqa.data.{_WHERE[name]}"), name)
