"""``VQADataset``: examples + vocabularies -> tensors, and ``collate`` for batches.

An item is ``{"image": (3, S, S) float, "image_id": (), "question": (T,) ids, "question_mask": (T,) bool,
"target": (A,) soft scores, "answer_index": () most common answer or -100, "answer_type": ()
index into ``ANSWER_TYPES`` or -1, "question_id": ()}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from vqa.data.answers import EvalVersion, answer_scores, clean, normalize_answer
from vqa.data.formats import ANSWER_TYPES, Example
from vqa.data.vocab import VocabBundle, tokenize

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """An RGB image resized to (size, size) as a (3, size, size) uint8 tensor."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, ImageNet mean and std (what torchvision backbones expect)."""
    return (image.float() / 255 - IMAGENET_MEAN) / IMAGENET_STD


def soft_targets(examples: Sequence[Example], vocab: VocabBundle,
                 version: EvalVersion = "current") -> list[tuple[list[int], list[float]]]:
    """Per example, the vocabulary answers with a non-zero official accuracy and that accuracy.

    A vocabulary answer ``a`` is scored as the evaluation scores the prediction ``a``: the target
    at the predicted index is the official per-question accuracy.
    """
    by_clean: dict[str, list[int]] = {}
    by_norm: dict[str, list[int]] = {}
    for i, a in enumerate(vocab.answers.tokens):
        by_clean.setdefault(clean(a), []).append(i)
        by_norm.setdefault(normalize_answer(a), []).append(i)
    out = []
    for ex in examples:
        scores, normalise = answer_scores(ex.answers, version) if ex.answers else ({}, False)
        index = by_norm if normalise else by_clean
        pairs = [(i, s) for a, s in scores.items() for i in index.get(a, ())]
        out.append(([i for i, _ in pairs], [s for _, s in pairs]))
    return out


class VQADataset(Dataset):
    """Questions with their images (``images``: image id -> file) and training targets.

    Args:
        examples: joined questions and annotations (``load_vqa``).
        vocab: question and answer vocabularies.
        images: image file per image id.
        image_size: images are resized to this square side.
        max_question_length: questions are cut to this many tokens.
        version: official evaluation release whose scores the soft targets hold.
        cache_images: decode every image once, up front, and keep it in memory (uint8).
    """

    def __init__(self, examples: Sequence[Example], vocab: VocabBundle,
                 images: dict[int, str | os.PathLike], image_size: int = 448,
                 max_question_length: int = 26, version: EvalVersion = "current",
                 cache_images: bool = False) -> None:
        self.examples = list(examples)
        self.num_answers = len(vocab.answers)
        self.image_size = image_size
        self.images = images
        n, t = len(self.examples), max_question_length
        self.questions = torch.zeros(n, t, dtype=torch.long)  # (N, T), 0 = padding
        for i, ex in enumerate(self.examples):
            ids = vocab.questions.encode(tokenize(ex.question))[:t]
            self.questions[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        self.targets = soft_targets(self.examples, vocab, version)
        self.answer_index = torch.tensor([
            vocab.answers.index.get(normalize_answer(ex.multiple_choice_answer), -100)
            if ex.multiple_choice_answer is not None else -100 for ex in self.examples])
        self.answer_type = torch.tensor([
            ANSWER_TYPES.index(ex.answer_type) if ex.answer_type in ANSWER_TYPES else -1
            for ex in self.examples])
        self.cache: dict[int, torch.Tensor] | None = None
        if cache_images:
            self.cache = {iid: load_image(p, image_size)
                          for iid, p in tqdm(images.items(), desc="caching images", unit="img")}

    def __len__(self) -> int:
        return len(self.examples)

    def image(self, image_id: int) -> torch.Tensor:
        """(3, S, S) normalised float image."""
        raw = self.cache[image_id] if self.cache is not None else load_image(
            self.images[image_id], self.image_size)
        return normalize_image(raw)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        target = torch.zeros(self.num_answers)
        idx, scores = self.targets[i]
        target[idx] = torch.tensor(scores)
        question = self.questions[i]
        return {"image": self.image(ex.image_id), "image_id": ex.image_id, "question": question,
                "question_mask": question != 0, "target": target,
                "answer_index": self.answer_index[i], "answer_type": self.answer_type[i],
                "question_id": ex.question_id}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items, trim question padding to the longest question in the batch, and keep each
    image once: ``image`` is (B_img, 3, S, S) and ``image_index`` (B,) points into it, so
    questions about the same image share one image-encoder pass."""
    images: dict[int, int] = {}
    for it in items:
        images.setdefault(it["image_id"], len(images))
    first = {row: it["image"] for it in items for row in (images[it["image_id"]],)}
    batch = {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k])
             else torch.tensor([it[k] for it in items]) for k in items[0] if k != "image"}
    batch["image"] = torch.stack([first[r] for r in range(len(images))])
    batch["image_index"] = torch.tensor([images[it["image_id"]] for it in items])
    length = max(int(batch["question_mask"].sum(1).max()), 1)
    batch["question"] = batch["question"][:, :length]  # (B, T) -> (B, T_batch)
    batch["question_mask"] = batch["question_mask"][:, :length]
    return batch


class ImageGroupedBatchSampler(Sampler[list[int]]):
    """Batches of about ``batch_size`` questions made of whole images' question groups, in a
    fresh random image order each epoch, so the image encoder runs once per image per batch.

    Args:
        image_ids: image id of every question in the dataset.
        batch_size: questions per batch (a batch ends at the first image that reaches it).
        shuffle: shuffle images each epoch (``False``: dataset order).
        seed: base seed; epoch ``e`` uses ``seed + e``.
    """

    def __init__(self, image_ids: Sequence[int], batch_size: int, shuffle: bool = True,
                 seed: int = 0) -> None:
        groups: dict[int, list[int]] = {}
        for i, iid in enumerate(image_ids):
            groups.setdefault(iid, []).append(i)
        self.groups = list(groups.values())
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.groups)))
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(order), generator=g).tolist()
        batches, batch = [], []
        for k in order:
            batch += self.groups[k]
            if len(batch) >= self.batch_size:
                batches.append(batch)
                batch = []
        return batches + ([batch] if batch else [])

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())
