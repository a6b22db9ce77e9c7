"""Official VQA formats, answer normalisation, the input pipeline, datasets and the shapes generator."""

from vqa.data.datamodule import Split, VQADataModule
from vqa.data.dataset import CachedFeatures, ImageFiles, VQADataset, collate
from vqa.data.formats import ANSWER_TYPES, Example, image_paths, load_cocoqa, load_vqa
from vqa.data.pipeline import InputPipeline
from vqa.data.preprocess import Preprocessed, preprocess, soft_targets
from vqa.data.tokenizers import PretrainedTokenizer, WordTokenizer, tokenize
from vqa.data.vocab import Vocabulary

__all__ = [
    "ANSWER_TYPES", "CachedFeatures", "Example", "ImageFiles", "InputPipeline", "Preprocessed",
    "PretrainedTokenizer", "Split", "VQADataModule", "VQADataset", "Vocabulary", "WordTokenizer",
    "collate", "image_paths", "load_cocoqa", "load_vqa", "preprocess", "soft_targets", "tokenize",
]
