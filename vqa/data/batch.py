"""``Batch``: what a loader yields, and ``collate``, which builds it from the dataset's items.

Images appear once per batch: ``image`` (B_img, 3, H, W) or ``features`` (B_img, N, C), in order of
first appearance, and ``image_index`` (B,) points each question at its image when an image is
asked about more than once (so image-side work runs once per image); without it, row ``i`` is
question ``i``'s image. Boxes (region features, or images with candidate boxes: a varying number
per image) are padded to the batch's most boxes, with ``region_mask`` marking the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

# Trimmed to the batch's longest question (hooks' per-token inputs keep their full length: the
# hooks slice them to the attention maps they score).
TOKEN_AXIS = ("question", "question_mask")


@dataclass
class Batch:
    """One batch of questions.

    Attributes:
        question: (B, T) token ids, right-padded.
        question_mask: (B, T) bool, the real tokens.
        question_id: (B,) the dataset's question ids.
        target: (B, A) soft scores: each answer's benchmark score for the question.
        answer_index: (B,) the training answer (most common human answer), -100 when it is not
            in the answer vocabulary.
        groups: (B, G) the question's category on each axis the benchmark reports, -1 for none.
        image: (B_img, 3, H, W) normalised images, or ``None`` when ``features`` are served.
        features: (B_img, N, C) cached region features (float16), or ``None``.
        image_index: (B,) each question's row in ``image`` / ``features``, or ``None``.
        region_mask: (B_img, N) bool, the real boxes (region features, or images with candidate
            boxes; ``None``: every region, as on a grid).
        boxes: (B_img, N, 4) the boxes' ``(x1, y1, x2, y2)`` over the image size, zero for
            padding (``None`` for grids).
        scored: (B,) bool, the questions the benchmark scores (``None``: all; GQA scores only its
            balanced questions).
        extra: the dataset hooks' inputs (``vqa.data.hooks``: multiple-choice candidates,
            answerability labels, grounding boxes), by name.
    """

    question: torch.Tensor
    question_mask: torch.Tensor
    question_id: torch.Tensor
    target: torch.Tensor
    answer_index: torch.Tensor
    groups: torch.Tensor
    image: torch.Tensor | None = None
    features: torch.Tensor | None = None
    image_index: torch.Tensor | None = None
    region_mask: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    scored: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.question)

    def inputs(self) -> dict[str, torch.Tensor | None]:
        """The model's keyword arguments."""
        return {"question": self.question, "question_mask": self.question_mask,
                "image": self.image, "features": self.features, "image_index": self.image_index,
                "region_mask": self.region_mask, "boxes": self.boxes}

    def pin_memory(self) -> Batch:
        """A copy in pinned memory (the loaders pin batches on a GPU)."""
        pinned = {f.name: _apply(getattr(self, f.name), lambda t: t.pin_memory()) for f in fields(self)}
        return replace(self, **pinned)


def _apply(value: Any, fn: Any) -> Any:
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, dict):
        return {k: _apply(v, fn) for k, v in value.items()}
    return value


def collate(items: list[dict[str, Any]]) -> Batch:
    """Stack the dataset's items (``VQADataset.__getitem__``), keep each image once and trim the
    question padding to the longest question in the batch."""
    key = "image" if "image" in items[0] else "features"
    images: dict[int | str, int] = {}
    for it in items:
        images.setdefault(it["image_id"], len(images))
    first = {images[it["image_id"]]: it for it in items}
    per_image = (key, "boxes", "image_id", "extra")
    stacked = {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k])
               else torch.tensor([it[k] for it in items])
               for k in items[0] if k not in per_image}
    length = max(int(stacked["question_mask"].sum(1).max()), 1)
    for k in TOKEN_AXIS:
        stacked[k] = stacked[k][:, :length]  # (B, T) -> (B, T_batch)
    extra = {k: torch.stack([it["extra"][k] for it in items]) for k in items[0]["extra"]}
    index = (torch.tensor([images[it["image_id"]] for it in items])
             if len(images) < len(items) else None)
    rows = [first[r] for r in range(len(images))]
    regions = _padded(rows, key) if "boxes" in items[0] else {
        key: torch.stack([it[key] for it in rows])}
    return Batch(**stacked, **regions, image_index=index, extra=extra)


def _padded(rows: list[dict[str, Any]], key: str) -> dict[str, torch.Tensor]:
    """Images with their boxes, or region features, of a varying number of boxes -> ``boxes``
    (B_img, N_max, 4) and ``region_mask`` (B_img, N_max), zero-padded, and the images stacked or
    the ``features`` (B_img, N_max, C) zero-padded."""
    n = max(len(it["boxes"]) for it in rows)
    boxes, mask = torch.zeros(len(rows), n, 4), torch.zeros(len(rows), n, dtype=torch.bool)
    if key == "image":
        images = torch.stack([it["image"] for it in rows])
    else:
        images = rows[0]["features"].new_zeros(len(rows), n, rows[0]["features"].shape[1])
    for r, it in enumerate(rows):
        k = len(it["boxes"])
        boxes[r, :k], mask[r, :k] = it["boxes"], True
        if key != "image":
            images[r, :k] = it["features"]
    return {key: images, "boxes": boxes, "region_mask": mask}
