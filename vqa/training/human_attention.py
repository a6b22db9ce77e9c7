"""Comparing image attention with human attention maps (VQA-HAT, Das et al. 2016).

VQA-HAT releases one grayscale PNG per question and annotator, named ``{question_id}_{k}.png``
(VQA v1 val has up to three per question). As that line of work does, the model's map of each
level and every human map are resized to a common grid (14 x 14 by default), and their Spearman
rank correlation is averaged over a question's human maps, then over questions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image

_NAME = re.compile(r"^(\d+)_(\d+)\.png$")


def read_hat(folder: str | os.PathLike) -> dict[int, list[Path]]:
    """Human attention map files per question id; a PNG not named ``{qid}_{k}.png`` is an error."""
    out: dict[int, list[Path]] = {}
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no VQA-HAT folder here")
    for path in sorted(folder.glob("*.png")):
        m = _NAME.match(path.name)
        if m is None:
            raise ValueError(f"{path}: expected a VQA-HAT map named '{{question_id}}_{{k}}.png'")
        out.setdefault(int(m.group(1)), []).append(path)
    if not out:
        raise FileNotFoundError(f"{folder}: no '{{question_id}}_{{k}}.png' maps found")
    return out


def load_map(path: str | os.PathLike, grid: tuple[int, int]) -> np.ndarray:
    """A human map averaged over the cells of ``grid``: (h * w,) float, row-major."""
    with Image.open(path) as img:
        small = img.convert("L").resize((grid[1], grid[0]), Image.Resampling.BOX)
    return np.asarray(small, np.float64).reshape(-1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank, as Spearman's correlation needs."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # rank of each distinct value's first
    return (first + (counts - 1) / 2)[inverse]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two flattened maps (``nan`` when either is constant)."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def resize_attention(attention: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]
                     ) -> np.ndarray:
    """Region attention (M, N) on ``grid`` -> (M, size[0] * size[1]) by area interpolation."""
    maps = attention.float().reshape(-1, 1, *grid)  # (M, 1, h, w)
    if size[0] <= grid[0] and size[1] <= grid[1]:
        out = F.interpolate(maps, size=size, mode="area")  # shrink: average the cells
    else:
        out = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return out.flatten(1).cpu().numpy()  # (M, size[0] * size[1])


class HumanAttention(pl.Callback):
    """Logs ``val/hat/{map}/rank_correlation``, for each of the model's maps over regions, for
    the validation questions that have human maps.

    Args:
        hat_dir: folder of ``{question_id}_{k}.png`` human attention maps.
        size: the common grid both maps are resized to.
    """

    def __init__(self, hat_dir: str, size: tuple[int, int] = (14, 14)) -> None:
        self.hat_dir, self.size = hat_dir, tuple(size)
        self.maps = read_hat(hat_dir)
        self._resized: dict[Path, np.ndarray] = {}  # human maps on the common grid, read once
        self.sums = torch.zeros(0, dtype=torch.float64)  # per map over regions (epoch start)
        self.count = torch.zeros((), dtype=torch.float64)

    def score(self, attention: torch.Tensor, grid: tuple[int, int], paths: list[Path]
              ) -> np.ndarray:
        """(M,) correlation of each map (M, N) with the human maps, averaged over them."""
        model = resize_attention(attention, grid, self.size)  # (M, S)
        for p in paths:
            if p not in self._resized:
                self._resized[p] = load_map(p, self.size)
        human = [self._resized[p] for p in paths]
        return np.array([np.nanmean([rank_correlation(level, h) for h in human])
                         for level in model])

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sums = torch.zeros(len(pl_module.model.maps.regions), dtype=torch.float64)
        self.count.zero_()

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict):
            return
        attention = outputs["image_attention"]  # (B, M, N)
        grid = pl_module.pipeline.region_grid(attention.shape[-1])
        for row, qid in enumerate(batch.question_id.tolist()):
            if qid in self.maps:
                corr = self.score(attention[row], grid, self.maps[qid])
                if np.isfinite(corr).all():
                    self.sums[: len(corr)] += torch.from_numpy(corr)
                    self.count += 1

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        sums = trainer.strategy.reduce(self.sums.to(pl_module.device), reduce_op="sum")
        count = trainer.strategy.reduce(self.count.to(pl_module.device), reduce_op="sum")
        if count > 0:
            for i, name in enumerate(pl_module.model.maps.regions):
                pl_module.log(f"val/hat/{name}/rank_correlation", (sums[i] / count).float())
            pl_module.log("val/hat/questions", count.float())
