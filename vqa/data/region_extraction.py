"""Region features for any image folder (``vqa extract-features --boxes FILE`` or ``--detector
NAME``): a frozen torchvision backbone's feature map pooled by RoIAlign (``vqa.models.BoxEncoder``)
over boxes given in a boxes file (``vqa.data.boxes``) or proposed by a torchvision detector, written
into a region cache (``vqa.data.regions``; resumable like every cache).

Detector proposals approximate the adaptive rule of the bottom-up features (Anderson et al. 2018):
the detections, suppressed across classes at IoU 0.3 (torchvision's detectors suppress per class),
scoring at least ``min_score``, at least ``min_boxes`` of them (the next best when fewer pass) and
at most ``max_boxes``; an image with no detection at all gets one box, the whole image. Anderson
et al. keep their region proposals rather than the class-refined boxes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vqa.data.boxes import ImageBoxes
from vqa.data.regions import RegionCache, Regions, write_regions

if TYPE_CHECKING:
    import torch

NMS_IOU = 0.3  # bottom-up-attention's generate_tsv.py suppresses at 0.3


def load_detector(name: str, weights: str | None) -> torch.nn.Module:
    """A torchvision detection model (``fasterrcnn_resnet50_fpn``, ...), its weights a torchvision
    weights name (torchvision's own download and cache) or a local state-dict file."""
    from torchvision.models import get_model

    is_file = weights is not None and weights.endswith((".pt", ".pth", ".bin"))
    model = get_model(name, weights=None if is_file else weights, weights_backbone=None)
    if is_file:
        import torch

        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def propose(detector: torch.nn.Module, image: torch.Tensor, min_boxes: int, max_boxes: int,
            min_score: float) -> np.ndarray:
    """Boxes (n, 4) in pixels of ``image`` (3, H, W) uint8, by the adaptive rule above."""
    from torchvision.ops import nms

    out = detector([image.float() / 255])[0]
    keep = nms(out["boxes"], out["scores"], NMS_IOU)  # across classes; sorted by score
    boxes, scores = out["boxes"][keep], out["scores"][keep]
    n = min(max(int((scores >= min_score).sum()), min_boxes), max_boxes, len(boxes))
    if n == 0:
        h, w = image.shape[1:]
        return np.array([[0, 0, w, h]], np.float32)
    return boxes[:n].float().cpu().numpy()


def extract_regions(images: dict[int | str, Path], out: str | os.PathLike, encoder: torch.nn.Module,
                    source: dict[str, Any], image_size: int, max_boxes: int,
                    boxes: dict[int | str, ImageBoxes] | None = None,
                    detector: torch.nn.Module | None = None, min_boxes: int = 10,
                    min_score: float = 0.2, batch_size: int = 32, device: str = "auto",
                    progress: bool = True) -> RegionCache:
    """Pool ``encoder`` (a ``BoxEncoder``) over each image's boxes (``boxes``, or ``detector``'s
    proposals) into the region cache ``out``. Boxes are stored in pixels of the upright image."""
    import torch

    if (boxes is None) == (detector is None):
        raise ValueError("give candidate boxes (--boxes FILE) or a detector (--detector NAME)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ids = sorted(images)  # all numbers or all names
    if boxes is not None:
        missing = [i for i in ids if i not in boxes]
        if missing:
            raise ValueError(f"the boxes file lists no boxes for {len(missing)} image(s) of the "
                             f"folder, e.g. {missing[:5]}")
    encoder = encoder.to(device).eval().requires_grad_(False)
    if detector is not None:
        detector = detector.to(device)

    def records(done: int) -> Iterator[Regions]:
        for start in range(done, len(ids), batch_size):
            yield from _batch(ids[start:start + batch_size])

    def _batch(batch_ids: list[int | str]) -> list[Regions]:
        from vqa.data.pipeline import load_image, normalize_image, upright_size

        resized, found = [], []
        for iid in batch_ids:
            if detector is not None:
                w, h = upright_size(images[iid])
                upright = load_image(images[iid], (h, w))  # (3, H, W) uint8
                with torch.inference_mode():
                    b = propose(detector, upright.to(device), min_boxes, max_boxes, min_score)
                found.append(ImageBoxes(b, w, h))
            else:
                given, (w, h) = boxes[iid], upright_size(images[iid])
                if (given.width, given.height) != (w, h):
                    raise ValueError(f"boxes file: image {iid} is {given.width} x {given.height}, "
                                     f"but {images[iid]} is {w} x {h} (upright)")
                found.append(given)
            resized.append(load_image(images[iid], (image_size, image_size)))
        k = max(len(f.boxes) for f in found)
        padded = torch.zeros(len(found), k, 4)
        for r, f in enumerate(found):
            padded[r, :len(f.boxes)] = torch.from_numpy(f.normalized())
        autocast = (torch.autocast("cuda", torch.float16) if device.startswith("cuda")
                    else nullcontext())
        with torch.inference_mode(), autocast:
            x = normalize_image(torch.stack(resized).to(device))  # (B, 3, S, S)
            feats = encoder(x, padded.to(device)).float().cpu().numpy()  # (B, K, C)
        return [Regions(iid, feats[r, :len(f.boxes)], f.boxes.astype(np.float32), f.width,
                        f.height, str(images[iid]))
                for r, (iid, f) in enumerate(zip(batch_ids, found, strict=True))]

    return write_regions(out, ids, records, source, max_boxes, str(out), progress)

