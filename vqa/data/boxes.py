"""Boxes files: candidate boxes per image, for region features pooled from images (shapes, or
``vqa extract-features --boxes``), and the overlap measures that score attention over boxes.

A boxes file is JSON: ``{"format": "vqa-boxes/1", "images": [{"image_id": 42, "width": 640,
"height": 480, "boxes": [[x1, y1, x2, y2], ...]}, ...]}``, corners in pixels of the image file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vqa._io import read_json

BOXES_FORMAT = "vqa-boxes/1"
IOU_HIT = 0.5  # a box "is" a referred object at this intersection over union or more


@dataclass(frozen=True)
class ImageBoxes:
    """An image's boxes (n, 4) in pixels, and its size."""

    boxes: np.ndarray
    width: int
    height: int

    def normalized(self) -> np.ndarray:
        """(n, 4) corners over the width and height, in [0, 1]."""
        return self.boxes / np.array([self.width, self.height] * 2, np.float32)


def read_boxes(path: str | os.PathLike) -> dict[int | str, ImageBoxes]:
    """Image id -> its boxes; a malformed entry names the file, the entry and what was expected."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != BOXES_FORMAT:
        raise ValueError(f"{path}: not a boxes file (expected format {BOXES_FORMAT!r})")
    out: dict[int | str, ImageBoxes] = {}
    for i, entry in enumerate(data.get("images", [])):
        where = f"{path}: images[{i}]"
        try:
            iid, w, h = entry["image_id"], int(entry["width"]), int(entry["height"])
            boxes = np.asarray(entry["boxes"], np.float32).reshape(-1, 4)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: expected image_id, width, height and boxes as a list of "
                             f"[x1, y1, x2, y2] ({type(e).__name__}: {e})") from None
        if iid in out:
            raise ValueError(f"{where}: image {iid} again")
        if len(boxes) == 0:
            raise ValueError(f"{where}: image {iid} has no boxes")
        bad = ~np.isfinite(boxes).all(1) | (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
        if bad.any():
            raise ValueError(f"{where}: image {iid}: box {int(np.flatnonzero(bad)[0])} is not "
                             "finite with x1 <= x2 and y1 <= y2")
        out[iid] = ImageBoxes(boxes, w, h)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes a (n, 4) and b (m, 4) -> (n, m)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (n, m, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)  # (n, m)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_cover(candidates: np.ndarray, referred: np.ndarray) -> np.ndarray:
    """(n,) 1.0 where a candidate box is one of the referred ones (IoU >= 0.5), else 0.0."""
    if len(referred) == 0:
        return np.zeros(len(candidates), np.float32)
    return (iou(candidates, referred).max(1) >= IOU_HIT).astype(np.float32)
