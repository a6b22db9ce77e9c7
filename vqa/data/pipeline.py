"""``InputPipeline``: every setting that defines the model's inputs, in one object.

The data module builds it from the config (``VQADataModule.pipeline``); every checkpoint carries it
(key ``vqa_pipeline``) and ``pipeline.json`` sits in the run's log folder. ``vqa validate``,
``vqa attend``, the notebook and the callbacks read the tokenizer, the maximum question length, the
image size and normalisation, the answer vocabulary and the region grid from it, and never ask for
them again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from vqa._io import read_json, write_json
from vqa.data.tokenizers import Encoded, Tokenizer, tokenize, tokenizer_from_dict
from vqa.data.vocab import Vocabulary

FORMAT = "vqa-pipeline/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(image: str | os.PathLike | Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """An image file (or PIL image) upright (its EXIF orientation applied, as viewers show it) as
    RGB resized to ``size`` (height, width): (3, H, W) uint8. A file that cannot be decoded
    (truncated, not an image) is an error naming it."""
    if isinstance(image, Image.Image):
        return _resized(image, size)
    try:
        with Image.open(image) as img:
            return _resized(img, size)
    except FileNotFoundError:
        raise FileNotFoundError(f"{image}: image not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{image}: cannot decode the image ({type(e).__name__}: {e})") from e


def upright_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as viewers show it (read from its header: an EXIF
    orientation that turns it by 90 degrees swaps them)."""
    with Image.open(path) as img:
        turned = img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
        return img.size[::-1] if turned else img.size


def _resized(img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    img = ImageOps.exif_transpose(img).convert("RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def normalize_image(image: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
                    std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, scaled to [0, 1] and normalised per channel (ImageNet's by
    default, what torchvision backbones expect)."""
    return (image.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint of ours, read without running code from it (``weights_only``); a file that is
    missing or is not such a checkpoint is an error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (not a zip), EOFError (truncated)...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})"
                         ) from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a checkpoint of `vqa fit` (no 'state_dict')")
    return checkpoint


def merge_into_words(attention: torch.Tensor, words: torch.Tensor,
                     width: int | None = None) -> torch.Tensor:
    """Token attention (B, L, T) -> word attention (B, L, W): the weights of a word's subword
    tokens summed, given each token's word ``words`` (B, T) (-1: special tokens and punctuation,
    which belong to no word, left out). ``W`` is ``width``, or the largest word index + 1."""
    b, levels, _ = attention.shape
    real = words >= 0  # (B, T)
    width = width if width is not None else int(words.max().clamp(min=0)) + 1
    index = words.clamp(min=0)[:, None].expand(-1, levels, -1)  # (B, L, T)
    return attention.new_zeros(b, levels, width).scatter_add_(2, index, attention * real[:, None])


@dataclass
class Question:
    """One encoded question: ``ids`` (T,), ``mask`` (T,) bool, ``words`` the question's words,
    ``word_of_token`` (T,) the word each token belongs to (-1: none), and ``known``: whether any
    token is not the unknown token."""

    text: str
    ids: torch.Tensor
    mask: torch.Tensor
    words: list[str]
    word_of_token: torch.Tensor
    known: bool

    def merge(self, attention: torch.Tensor | np.ndarray) -> np.ndarray:
        """Token attention (L, T) -> word attention (L, W) (``merge_into_words``); attention at
        padding beyond the question's tokens is ignored."""
        t = min(torch.as_tensor(attention).shape[-1], len(self.word_of_token))
        a = torch.as_tensor(attention)[..., :t].float().cpu()  # (L, t)
        return merge_into_words(a[None], self.word_of_token[None, :t], len(self.words))[0].numpy()


@dataclass
class InputPipeline:
    """What turns a question and an image into model inputs, and answer indices into answers.

    Args:
        tokenizer: ``WordTokenizer`` (the paper's vocabulary) or ``PretrainedTokenizer``.
        answers: the answer vocabulary (the model's outputs).
        max_question_length: questions are cut to this many tokens.
        image_size: (height, width) images are resized to.
        mean, std: per-channel normalisation of images scaled to [0, 1].
        grid: (rows, columns) of the image regions, row-major; ``None`` until known (the image
            encoder's for images, the feature cache's for cached features).
        image_dim: region feature size of a feature cache (``None``: the image encoder's).
    """

    tokenizer: Tokenizer
    answers: Vocabulary
    max_question_length: int
    image_size: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    grid: tuple[int, int] | None = None
    image_dim: int | None = None

    def encode(self, questions: list[str]) -> Encoded:
        """Questions -> right-padded ids, lengths and each token's word (see ``Encoded``)."""
        return self.tokenizer.encode(questions, self.max_question_length)

    def question(self, text: str) -> Question:
        """One question, with its words and where each token came from."""
        enc = self.encode([text])
        t = max(int(enc.lengths[0]), 1)  # an empty question keeps one (masked) position
        ids, mask = torch.from_numpy(enc.ids[0, :t]), torch.from_numpy(enc.mask[0, :t])
        words = torch.from_numpy(enc.words[0, :t].astype(np.int64))
        known = bool(((words >= 0) & (ids != self.tokenizer.unknown_id)).any())
        return Question(text, ids, mask, tokenize(text), words, known)

    def image(self, image: str | os.PathLike | Image.Image) -> torch.Tensor:
        """(3, H, W) uint8, as the model sees it before normalisation."""
        return load_image(image, self.image_size)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> float model input."""
        return normalize_image(image, self.mean, self.std)

    def with_grid(self, grid: tuple[int, int]) -> InputPipeline:
        """This pipeline with the region grid set; a different grid already set is an error."""
        grid = tuple(int(g) for g in grid)
        if self.grid is not None and tuple(self.grid) != grid:
            raise ValueError(f"region grid {grid} differs from the pipeline's {tuple(self.grid)} "
                             "(a checkpoint used with another image encoder or image size?)")
        return replace(self, grid=grid)

    def region_grid(self, regions: int) -> tuple[int, int]:
        """(rows, columns) of the region grid, checked against a model's ``regions`` count."""
        if self.grid is None or self.grid[0] * self.grid[1] != regions:
            raise ValueError(f"the input pipeline's region grid {self.grid} does not cover the "
                             f"model's {regions} regions")
        return tuple(self.grid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``pipeline.json``, checkpoints); ``from_dict`` reads it back."""
        return {"format": FORMAT, "tokenizer": self.tokenizer.to_dict(),
                "answers": self.answers.tokens, "max_question_length": self.max_question_length,
                "image_size": list(self.image_size), "mean": list(self.mean),
                "std": list(self.std), "grid": list(self.grid) if self.grid else None,
                "image_dim": self.image_dim}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> InputPipeline:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{where}: not an input pipeline (expected format {FORMAT!r})")
        return cls(tokenizer_from_dict(d["tokenizer"], where), Vocabulary(d["answers"]),
                   int(d["max_question_length"]), tuple(d["image_size"]), tuple(d["mean"]),
                   tuple(d["std"]), tuple(d["grid"]) if d["grid"] else None, d["image_dim"])

    def key(self) -> list[Any]:
        """What preprocessing with this pipeline depends on (for cache keys)."""
        d = self.to_dict()
        return [d["tokenizer"], d["answers"], d["max_question_length"]]

    def save(self, path: str | os.PathLike) -> None:
        """Write ``pipeline.json`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> InputPipeline:
        """From ``pipeline.json`` (a ``.json`` file) or from a checkpoint (any other file)."""
        if str(path).endswith(".json"):
            return cls.from_dict(read_json(path), str(path))
        return cls.from_checkpoint(read_checkpoint(path), str(path))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], where: str) -> InputPipeline:
        """The pipeline a checkpoint carries (key ``vqa_pipeline``)."""
        if "vqa_pipeline" not in checkpoint:
            older = " (it has 'vqa_vocab': written by an earlier version; retrain)" if (
                "vqa_vocab" in checkpoint) else ""
            raise ValueError(f"{where}: checkpoint holds no input pipeline{older}")
        return cls.from_dict(checkpoint["vqa_pipeline"], where)
