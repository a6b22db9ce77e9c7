"""Official VQA formats, answer normalisation, vocabularies, datasets and the shapes generator."""

from vqa.data.datamodule import Split, VQADataModule
from vqa.data.dataset import CachedFeatures, ImageFiles, VQADataset, collate
from vqa.data.formats import ANSWER_TYPES, Example, image_paths, load_cocoqa, load_vqa
from vqa.data.preprocess import Preprocessed, preprocess, soft_targets
from vqa.data.vocab import VocabBundle, Vocabulary, tokenize

__all__ = [
    "ANSWER_TYPES", "CachedFeatures", "Example", "ImageFiles", "Preprocessed", "Split",
    "VQADataModule", "VQADataset", "VocabBundle", "Vocabulary", "collate", "image_paths",
    "load_cocoqa", "load_vqa", "preprocess", "soft_targets", "tokenize",
]
