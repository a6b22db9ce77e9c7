"""Official VQA formats, answer normalisation, vocabularies, datasets and the shapes generator."""

from vqa.data.datamodule import Split, VQADataModule
from vqa.data.dataset import VQADataset, collate, soft_targets
from vqa.data.formats import ANSWER_TYPES, Example, image_paths, load_vqa
from vqa.data.vocab import VocabBundle, Vocabulary, tokenize

__all__ = [
    "ANSWER_TYPES", "Example", "Split", "VQADataModule", "VQADataset", "VocabBundle",
    "Vocabulary", "collate", "image_paths", "load_vqa", "soft_targets", "tokenize",
]
