"""``VQADataset``: preprocessed questions + an image source -> tensors, and ``collate`` for batches.

An item is ``{"image": (3, S, S) float`` or ``"features": (N, C) float, "image_id": (), "question":
(T,) ids, "question_mask": (T,) bool, "target": (A,) soft scores, "answer_index": () most common
answer or -100, "answer_type": () index into ``ANSWER_TYPES`` or -1, "question_id": ()}``, plus
``"choices": (K,)`` candidate answer indices (-1: not in the vocabulary) for multiple choice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from vqa.data.preprocess import Preprocessed

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load_image(image: str | os.PathLike | Image.Image, size: int) -> torch.Tensor:
    """An image file (or PIL image) as RGB resized to (size, size): a (3, size, size) uint8 tensor."""
    if isinstance(image, Image.Image):
        return _resized(image, size)
    with Image.open(image) as img:
        return _resized(img, size)


def _resized(img: Image.Image, size: int) -> torch.Tensor:
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, ImageNet mean and std (what torchvision backbones expect)."""
    return (image.float() / 255 - IMAGENET_MEAN) / IMAGENET_STD


class ImageFiles:
    """Image source: decoded files, ``source[image_id]`` -> (3, S, S) normalised float image.

    Args:
        paths: image file per image id.
        size: images are resized to this square side.
        in_memory: decode every image once, up front, and keep it (uint8) in memory.
    """

    key = "image"

    def __init__(self, paths: dict[int, Path], size: int, in_memory: bool = False) -> None:
        self.paths, self.size = paths, size
        self._original: dict[int, tuple[int, int]] = {}
        self.memory = {iid: load_image(p, size) for iid, p in tqdm(
            paths.items(), desc="caching images", unit="img")} if in_memory else None

    def __getitem__(self, image_id: int) -> torch.Tensor:
        raw = self.memory[image_id] if self.memory is not None else load_image(
            self.paths[image_id], self.size)
        return normalize_image(raw)

    def original_size(self, image_id: int) -> tuple[int, int]:
        """(width, height) of the image file, before resizing (read from its header once)."""
        if image_id not in self._original:
            with Image.open(self.paths[image_id]) as img:
                self._original[image_id] = img.size
        return self._original[image_id]


class CachedFeatures:
    """Image source: precomputed grid features, ``source[image_id]`` -> (N, C) as stored (float16:
    half the bytes to copy and transfer; the model converts them on its device).

    Args:
        caches: feature caches (``vqa.features.FeatureCache``); an image is read from the first
            that holds it.
    """

    key = "features"

    def __init__(self, caches: Sequence[Any]) -> None:
        self.caches = list(caches)

    def __getitem__(self, image_id: int) -> torch.Tensor:
        for cache in self.caches:
            if image_id in cache:
                return cache[image_id]
        raise KeyError(f"image {image_id} is in none of the feature caches "
                       f"{[str(c.folder) for c in self.caches]}")


class VQADataset(Dataset):
    """Preprocessed questions and targets with an image source (``ImageFiles`` or
    ``CachedFeatures``); items carry ``image`` or ``features`` accordingly."""

    def __init__(self, data: Preprocessed, images: ImageFiles | CachedFeatures,
                 num_answers: int) -> None:
        self.data, self.images, self.num_answers = data, images, num_answers
        self.examples = data.examples
        # Grounding ground truth (the shapes dataset): boxes and referring words per question.
        self.grounded = isinstance(images, ImageFiles) and any(
            "grounding" in ex.extra for ex in self.examples)

    def grounding(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, S) bool pixels inside the referred boxes (in the resized image) and (T,) bool
        referring word positions, for item ``i``."""
        ex, size = self.examples[i], self.images.size
        g = ex.extra.get("grounding", {})
        boxes = torch.zeros(size, size, dtype=torch.bool)
        if g.get("boxes"):
            w, h = self.images.original_size(ex.image_id)
            for x0, y0, x1, y1 in g["boxes"]:  # pixels the box touches after resizing
                boxes[math.floor(y0 * size / h):math.ceil(y1 * size / h),
                      math.floor(x0 * size / w):math.ceil(x1 * size / w)] = True
        words = torch.zeros(self.data.questions.shape[1], dtype=torch.bool)
        positions = [p for p in g.get("word_positions", []) if p < len(words)]
        words[positions] = True
        return boxes, words

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int | list[int]) -> dict[str, Any] | list[dict[str, Any]]:
        """Item ``i``, or the items of a list of indices (a sampler that yields batches)."""
        if isinstance(i, list):
            return [self[j] for j in i]
        ex, d = self.examples[i], self.data
        question = d.questions[i]
        item = {self.images.key: self.images[ex.image_id], "image_id": ex.image_id,
                "question": question, "question_mask": question != 0,
                "target": d.target(i, self.num_answers), "answer_index": d.answer_index[i],
                "answer_type": d.answer_type[i], "question_id": ex.question_id}
        if d.choices is not None:
            item["choices"] = d.choices[i]
        if self.grounded:
            item["grounding_boxes"], item["grounding_words"] = self.grounding(i)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items, trim question padding to the longest question in the batch, and keep each
    image once: ``image`` (B_img, 3, S, S) or ``features`` (B_img, N, C), in order of first
    appearance. When an image repeats, ``image_index`` (B,) points each question into them, so
    questions about the same image share the image-side work; without it, row i is question i's."""
    key = "image" if "image" in items[0] else "features"
    images: dict[int, int] = {}
    for it in items:
        images.setdefault(it["image_id"], len(images))
    first = {row: it[key] for it in items for row in (images[it["image_id"]],)}
    batch = {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k])
             else torch.tensor([it[k] for it in items]) for k in items[0] if k != key}
    batch[key] = torch.stack([first[r] for r in range(len(images))])
    if len(images) < len(items):
        batch["image_index"] = torch.tensor([images[it["image_id"]] for it in items])
    length = max(int(batch["question_mask"].sum(1).max()), 1)
    batch["question"] = batch["question"][:, :length]  # (B, T) -> (B, T_batch)
    batch["question_mask"] = batch["question_mask"][:, :length]
    return batch
