"""Grounding scores: does attention land on what the question refers to? (shapes dataset)

Per co-attention level, over questions that refer to at least one object (or word):

* pointing accuracy: the most attended image region overlaps a referred object's box;
* mass: the share of image attention inside the referred boxes (each region's weight spread
  evenly over its pixels);
* word hit rate: the most attended word is one that refers to the object (a word's subword
  tokens' attention summed first, so every tokenizer is scored over the same words).

States are sums, so the scores reduce correctly across processes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from vqa.data.pipeline import merge_into_words


def merge_words(attention: torch.Tensor, referred: torch.Tensor, words: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token attention (B, L, T) and referring tokens (B, T) -> word attention (B, L, W) and
    referred words (B, W), given each token's word ``words`` (B, T) (-1: none, dropped)."""
    merged = merge_into_words(attention, words)  # (B, L, W)
    hit = torch.zeros(merged.shape[0], merged.shape[2], dtype=torch.long,
                      device=words.device).scatter_reduce_(
        1, words.clamp(min=0), (referred & (words >= 0)).long(), "amax") > 0  # (B, W)
    return merged, hit


def box_pixels(boxes: list[list[float]], original: tuple[int, int], size: tuple[int, int]
               ) -> torch.Tensor:
    """(H, W) bool: the pixels that boxes ``[x0, y0, x1, y1]`` of an ``original`` (width, height)
    image touch once it is resized to ``size`` (height, width)."""
    (w, h), (height, width) = original, size
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        mask[math.floor(y0 * height / h):math.ceil(y1 * height / h),
             math.floor(x0 * width / w):math.ceil(x1 * width / w)] = True
    return mask


def region_cover(box_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Share of each grid cell's pixels inside the boxes: (B, H, W) bool -> (B, N), row-major."""
    return F.adaptive_avg_pool2d(box_mask[:, None].float(), grid).flatten(1)


class GroundingScores(Metric):
    """Pointing accuracy, attention mass in boxes and word hit rate per level, in percent.

    Args:
        levels: the names of the attention levels (the rows of the model's attention maps).
    """

    full_state_update = False

    def __init__(self, levels: tuple[str, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.levels = levels
        for name in ("pointing", "mass", "word_hit"):
            self.add_state(name, torch.zeros(len(levels), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("boxed", "worded"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, image_attention: torch.Tensor, question_attention: torch.Tensor,
               box_mask: torch.Tensor, word_mask: torch.Tensor, grid: tuple[int, int],
               token_words: torch.Tensor | None = None) -> None:
        """``image_attention`` (B, L, N), ``question_attention`` (B, L, T), ``box_mask`` (B, H, W)
        pixels inside referred boxes, ``word_mask`` (B, T') referring tokens (T' >= T),
        ``token_words`` (B, T') each token's word (-1: none; ``None``: tokens are words)."""
        cover = region_cover(box_mask, grid)  # (B, N)
        boxed = cover.sum(1) > 0  # (B,)
        top = image_attention.argmax(-1)  # (B, L)
        pointing = cover.gather(1, top) > 0  # (B, L)
        mass = (image_attention * cover[:, None]).sum(-1)  # (B, L, N) -> (B, L)
        self.pointing += pointing[boxed].sum(0).double()
        self.mass += mass[boxed].sum(0).double()
        self.boxed += boxed.sum()
        t = question_attention.shape[-1]
        words = word_mask[:, :t]  # (B, T)
        if token_words is not None:
            question_attention, words = merge_words(question_attention, words, token_words[:, :t])
        worded = words.any(1)  # (B,)
        hit = words.gather(1, question_attention.argmax(-1))  # (B, L)
        self.word_hit += hit[worded].sum(0).double()
        self.worded += worded.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, level in enumerate(self.levels):
            if self.boxed > 0:
                out[f"{level}/pointing"] = 100 * self.pointing[i] / self.boxed
                out[f"{level}/mass"] = 100 * self.mass[i] / self.boxed
            if self.worded > 0:
                out[f"{level}/word_hit"] = 100 * self.word_hit[i] / self.worded
        return out
