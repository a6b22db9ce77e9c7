"""``VQADataset``: preprocessed questions + an image source -> tensors, and ``collate`` for batches.

An item is ``{"image": (3, H, W) float`` or ``"features": (N, C) float, "image_id": int or str,
"question": (T,) ids, "question_mask": (T,) bool, "target": (A,) soft scores, "answer_index": ()
most common answer or -100, "groups": (G,) the question's category on each axis the benchmark
reports, or -1, "question_id": ()}``, plus ``"answerable": ()`` (1., 0., -1. unknown) for datasets
that label answerability, ``"scored": ()`` bool where the benchmark scores only some questions,
``"choices": (K,)`` candidate answer indices (-1: not in the vocabulary) for multiple choice, and
``"question_features": (T, L, H)`` when a frozen text encoder's features are cached. Grounded items
(shapes) add ``"grounding_boxes": (H, W)``, ``"grounding_words": (T,)`` referring tokens and
``"question_words": (T,)`` each token's word (-1: none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from vqa.data.pipeline import InputPipeline
from vqa.data.preprocess import Preprocessed
from vqa.data.question_features import QuestionFeatures


class ImageFiles:
    """Image source: decoded files, ``source[image_id]`` -> (3, H, W) normalised float image.

    Args:
        paths: image file per image id.
        pipeline: resizes (to ``image_size``) and normalises.
        in_memory: decode every image once, up front, and keep it (uint8) in memory.
    """

    key = "image"

    def __init__(self, paths: dict[int | str, Path], pipeline: InputPipeline,
                 in_memory: bool = False) -> None:
        self.paths, self.pipeline = paths, pipeline
        self._original: dict[int | str, tuple[int, int]] = {}
        self.memory = {iid: pipeline.image(p) for iid, p in tqdm(
            paths.items(), desc="caching images", unit="img")} if in_memory else None

    def raw(self, image_id: int | str) -> torch.Tensor:
        """(3, H, W) uint8, resized as the model sees it."""
        if self.memory is not None:
            return self.memory[image_id]
        return self.pipeline.image(self.paths[image_id])

    def __getitem__(self, image_id: int | str) -> torch.Tensor:
        return self.pipeline.normalize(self.raw(image_id))

    def original_size(self, image_id: int | str) -> tuple[int, int]:
        """(width, height) of the image file, before resizing (read from its header once)."""
        if image_id not in self._original:
            with Image.open(self.paths[image_id]) as img:
                self._original[image_id] = img.size
        return self._original[image_id]


class CachedFeatures:
    """Image source: precomputed grid features, ``source[image_id]`` -> (N, C) as stored (float16:
    half the bytes to copy and transfer; the model converts them on its device).

    Args:
        caches: feature caches (``vqa.data.features.FeatureCache``); an image is read from the first
            that holds it.
    """

    key = "features"

    def __init__(self, caches: Sequence[Any]) -> None:
        self.caches = list(caches)

    def __getitem__(self, image_id: int | str) -> torch.Tensor:
        for cache in self.caches:
            if image_id in cache:
                return cache[image_id]
        raise KeyError(f"image {image_id} is in none of the feature caches "
                       f"{[str(c.folder) for c in self.caches]}")


class VQADataset(Dataset):
    """Preprocessed questions and targets with an image source (``ImageFiles`` or
    ``CachedFeatures``); items carry ``image`` or ``features`` accordingly."""

    def __init__(self, data: Preprocessed, images: ImageFiles | CachedFeatures,
                 num_answers: int, question_features: QuestionFeatures | None = None) -> None:
        self.data, self.images, self.num_answers = data, images, num_answers
        self.question_features = question_features
        self.examples = data.examples
        # Grounding ground truth (the shapes dataset): boxes and referring words per question.
        self.grounded = isinstance(images, ImageFiles) and any(
            "grounding" in ex.extra for ex in self.examples)

    def grounding(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, W) bool pixels inside the referred boxes (in the resized image) and (T,) bool
        tokens of the referring words, for item ``i``."""
        ex, (height, width) = self.examples[i], self.images.pipeline.image_size
        g = ex.extra.get("grounding", {})
        boxes = torch.zeros(height, width, dtype=torch.bool)
        if g.get("boxes"):
            w, h = self.images.original_size(ex.image_id)
            for x0, y0, x1, y1 in g["boxes"]:  # pixels the box touches after resizing
                boxes[math.floor(y0 * height / h):math.ceil(y1 * height / h),
                      math.floor(x0 * width / w):math.ceil(x1 * width / w)] = True
        referred = list(g.get("word_positions", []))
        words = torch.from_numpy(np.isin(self.data.words[i], referred) & (self.data.words[i] >= 0))
        return boxes, words

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int | list[int]) -> dict[str, Any] | list[dict[str, Any]]:
        """Item ``i``, or the items of a list of indices (a sampler that yields batches)."""
        if isinstance(i, list):
            return [self[j] for j in i]
        ex, d = self.examples[i], self.data
        question = d.questions[i]
        mask = torch.arange(len(question)) < d.lengths[i]
        item = {self.images.key: self.images[ex.image_id], "image_id": ex.image_id,
                "question": question, "question_mask": mask,
                "target": d.target(i, self.num_answers), "answer_index": d.answer_index[i],
                "groups": d.groups[i], "question_id": ex.question_id}
        if d.answerable is not None:
            item["answerable"] = d.answerable[i]
        if d.scored is not None:
            item["scored"] = d.scored[i]
        if d.choices is not None:
            item["choices"] = d.choices[i]
        if self.question_features is not None:
            item["question_features"] = self.question_features.padded(i, len(question))
        if self.grounded:
            item["grounding_boxes"], item["grounding_words"] = self.grounding(i)
            item["question_words"] = torch.from_numpy(d.words[i].astype(np.int64))  # (T,)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items, trim question padding to the longest question in the batch, and keep each
    image once: ``image`` (B_img, 3, S, S) or ``features`` (B_img, N, C), in order of first
    appearance. When an image repeats, ``image_index`` (B,) points each question into them, so
    questions about the same image share the image-side work; without it, row i is question i's.
    Image ids (numbers or file names) stay out of the batch."""
    key = "image" if "image" in items[0] else "features"
    images: dict[int | str, int] = {}
    for it in items:
        images.setdefault(it["image_id"], len(images))
    first = {row: it[key] for it in items for row in (images[it["image_id"]],)}
    batch = {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k])
             else torch.tensor([it[k] for it in items]) for k in items[0]
             if k not in (key, "image_id")}
    batch[key] = torch.stack([first[r] for r in range(len(images))])
    if len(images) < len(items):
        batch["image_index"] = torch.tensor([images[it["image_id"]] for it in items])
    length = max(int(batch["question_mask"].sum(1).max()), 1)
    for k in ("question", "question_mask", "question_features", "question_words"):
        if k in batch:
            batch[k] = batch[k][:, :length]  # (B, T, ...) -> (B, T_batch, ...)
    return batch
