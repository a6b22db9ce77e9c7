"""``VQADataset``: preprocessed questions + an image source -> items (``vqa.data.batch.collate``
stacks them into a ``Batch``).

An item is ``{"image": (3, H, W) float`` or ``"features": (N, C) float16 (with ``"boxes": (N, 4)``
for region caches, N varying per image), "image_id": int or str,
"question": (T,) ids, "question_mask": (T,) bool, "target": (A,) soft scores, "answer_index": ()
most common answer or -100, "groups": (G,) the question's category on each axis the benchmark
reports, or -1, "question_id": (), "extra": {the hooks' inputs}}``, plus ``"scored": ()`` bool
where the benchmark scores only some questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from vqa.data.hooks import Hook
from vqa.data.pipeline import InputPipeline, upright_size
from vqa.data.preprocess import Preprocessed


class ImageFiles:
    """Image source: decoded files, ``source[image_id]`` -> (3, H, W) normalised float image.

    Args:
        paths: image file per image id.
        pipeline: resizes (to ``image_size``) and normalises.
        in_memory: decode every image once, up front, and keep it (uint8) in memory.
        boxes: candidate boxes per image (``vqa.data.boxes.read_boxes``); items then carry
            ``{"image": ..., "boxes": (n, 4)}``, corners over the image size.
    """

    key = "image"

    def __init__(self, paths: dict[int | str, Path], pipeline: InputPipeline,
                 in_memory: bool = False, boxes: dict[int | str, Any] | None = None) -> None:
        self.paths, self.pipeline, self.boxes = paths, pipeline, boxes
        self.max_boxes = max((len(b.boxes) for b in boxes.values()), default=0) if boxes else 0
        self._original: dict[int | str, tuple[int, int]] = {}
        self.memory = {iid: pipeline.image(p) for iid, p in tqdm(
            paths.items(), desc="caching images", unit="img")} if in_memory else None
        self._last: tuple[int | str, torch.Tensor] | None = None

    def raw(self, image_id: int | str) -> torch.Tensor:
        """(3, H, W) uint8, resized as the model sees it."""
        if self.memory is not None:
            return self.memory[image_id]
        return self.pipeline.image(self.paths[image_id])

    def __getitem__(self, image_id: int | str) -> torch.Tensor | dict[str, torch.Tensor]:
        """The normalised image (with its boxes, when given); the last one is kept, as a batch
        grouped by image asks for it once per question (``collate`` keeps one copy)."""
        if self._last is None or self._last[0] != image_id:
            self._last = (image_id, self.pipeline.normalize(self.raw(image_id)))
        if self.boxes is None:
            return self._last[1]
        return {"image": self._last[1],
                "boxes": torch.from_numpy(self.boxes[image_id].normalized())}  # (n, 4)

    def original_size(self, image_id: int | str) -> tuple[int, int]:
        """(width, height) of the upright image file, before resizing (read from its header
        once; an EXIF orientation that turns it by 90 degrees swaps them)."""
        if image_id not in self._original:
            self._original[image_id] = upright_size(self.paths[image_id])
        return self._original[image_id]


class CachedFeatures:
    """Image source: precomputed features, ``source[image_id]`` -> grid features (N, C) as stored
    (float16: half the bytes to copy and transfer; the model converts them on its device), or, from
    region caches, ``{"features": (n, C), "boxes": (n, 4)}`` with the boxes' ``(x1, y1, x2, y2)``
    over the image's width and height (in [0, 1]).

    Args:
        caches: grid or region caches (``vqa.data.features.FeatureCache``,
            ``vqa.data.regions.RegionCache``), all of one kind; an image is read from the first that
            holds it.
    """

    key = "features"

    def __init__(self, caches: Sequence[Any]) -> None:
        self.caches = list(caches)

    def __getitem__(self, image_id: int | str) -> torch.Tensor | dict[str, torch.Tensor]:
        for cache in self.caches:
            if image_id in cache:
                return _as_item(cache[image_id])
        raise KeyError(f"image {image_id} is in none of the feature caches "
                       f"{[str(c.folder) for c in self.caches]}")


def _as_item(value: Any) -> torch.Tensor | dict[str, torch.Tensor]:
    if torch.is_tensor(value):  # a grid
        return value
    scale = torch.tensor([value.width, value.height] * 2, dtype=torch.float32)
    return {"features": torch.from_numpy(value.features),
            "boxes": torch.from_numpy(value.boxes) / scale}  # (n, 4) in [0, 1]


class VQADataset(Dataset):
    """Preprocessed questions and targets with an image source (``ImageFiles`` or
    ``CachedFeatures``); items carry ``image`` or ``features`` accordingly, and ``extra``, the
    inputs of the dataset hooks that apply to this split (``vqa.data.hooks``).

    Args:
        data: the split as arrays (``vqa.data.preprocess``).
        images: where each question's image or features come from.
        num_answers: size of the answer vocabulary (the length of ``target``).
        hooks: the dataset format's hooks; those that apply to this split are kept (``hooks``).
    """

    def __init__(self, data: Preprocessed, images: ImageFiles | CachedFeatures,
                 num_answers: int, hooks: Sequence[Hook] = ()) -> None:
        self.data, self.images, self.num_answers = data, images, num_answers
        self.examples = data.examples
        self.hooks = [h for h in hooks if h.applies(self)]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int | list[int]) -> dict[str, Any] | list[dict[str, Any]]:
        """Item ``i``, or the items of a list of indices (a sampler that yields batches)."""
        if isinstance(i, list):
            return [self[j] for j in i]
        ex, d = self.examples[i], self.data
        question = d.questions[i]
        image = self.images[ex.image_id]
        item = {**(image if isinstance(image, dict) else {self.images.key: image}),
                "image_id": ex.image_id,
                "question": question, "question_mask": torch.arange(len(question)) < d.lengths[i],
                "target": d.target(i, self.num_answers), "answer_index": d.answer_index[i],
                "groups": d.groups[i], "question_id": ex.question_id,
                "extra": {k: v for h in self.hooks for k, v in h.item(self, i).items()}}
        if d.scored is not None:
            item["scored"] = d.scored[i]
        return item
