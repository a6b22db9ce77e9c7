"""Grounding scores: does attention land on what the question refers to? (shapes dataset)

Per attention map (a HieCoAtt level, a SAN hop, a BAN glimpse, ...), over questions that refer to
at least one object (or word), and per question family:

* pointing accuracy: the most attended image region overlaps a referred object's box (over
  candidate boxes instead of a grid: the most attended box is a referred object's, IoU >= 0.5);
* mass: the share of image attention inside the referred boxes (each grid cell's weight spread
  evenly over its pixels; over boxes, the weight of the boxes that are referred objects');
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
    """Pointing accuracy and attention mass in boxes per map over regions, word hit rate per map
    over words, in percent; over all questions and per question family.

    Args:
        region_maps: the names of the rows of the model's maps over regions.
        word_maps: the names of the rows of its maps over words.
        families: the question families (index ``f`` of ``update``'s ``family``).
    """

    full_state_update = False

    def __init__(self, region_maps: tuple[str, ...], word_maps: tuple[str, ...],
                 families: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.region_maps, self.word_maps, self.families = region_maps, word_maps, families
        f = len(families) + 1  # row 0: every question; row 1 + i: family i
        for name, maps in (("pointing", region_maps), ("mass", region_maps), ("word_hit", word_maps)):
            self.add_state(name, torch.zeros(f, len(maps), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("boxed", "worded"):
            self.add_state(name, torch.zeros(f, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, state: str, values: torch.Tensor, kept: torch.Tensor,
             family: torch.Tensor | None) -> None:
        """Sum ``values`` (B, ...) of the ``kept`` (B,) questions into row 0 and their family's."""
        total = getattr(self, state)
        total[0] += values[kept].sum(0).double()
        if family is not None and self.families:
            fam, kept_values = family[kept], values[kept].double()
            known = fam >= 0  # -1: no family, counted in row 0 only
            total.index_add_(0, fam[known] + 1, kept_values[known])

    def update(self, image_attention: torch.Tensor, question_attention: torch.Tensor,
               cover: torch.Tensor, word_mask: torch.Tensor,
               token_words: torch.Tensor | None = None, family: torch.Tensor | None = None) -> None:
        """``image_attention`` (B, M_v, N), ``question_attention`` (B, M_q, T), ``cover`` (B, N)
        each region's share in the referred objects (``region_cover`` on a grid, ``box_cover``
        over boxes), ``word_mask`` (B, T') referring tokens (T' >= T), ``token_words`` (B, T')
        each token's word (-1: none; ``None``: tokens are words), ``family`` (B,) each
        question's family index (-1: none)."""
        boxed = cover.sum(1) > 0  # (B,)
        top = image_attention.argmax(-1)  # (B, M_v)
        pointing = (cover.gather(1, top) > 0).double()  # (B, M_v)
        mass = (image_attention * cover[:, None]).sum(-1)  # (B, M_v, N) -> (B, M_v)
        self._add("pointing", pointing, boxed, family)
        self._add("mass", mass, boxed, family)
        self._add("boxed", torch.ones_like(boxed, dtype=torch.float64), boxed, family)
        t = question_attention.shape[-1]
        words = word_mask[:, :t]  # (B, T)
        if token_words is not None:
            question_attention, words = merge_words(question_attention, words, token_words[:, :t])
        worded = words.any(1)  # (B,)
        hit = words.gather(1, question_attention.argmax(-1)).double()  # (B, M_q)
        self._add("word_hit", hit, worded, family)
        self._add("worded", torch.ones_like(worded, dtype=torch.float64), worded, family)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{map}/pointing``, ``{map}/mass``, ``{map}/word_hit`` over every question, and
        ``{map}/{family}/...`` per family."""
        out = {}
        for row, family in enumerate(("", *self.families)):
            part = f"/{family}" if family else ""
            for i, name in enumerate(self.region_maps):
                if self.boxed[row] > 0:
                    out[f"{name}{part}/pointing"] = 100 * self.pointing[row, i] / self.boxed[row]
                    out[f"{name}{part}/mass"] = 100 * self.mass[row, i] / self.boxed[row]
            for i, name in enumerate(self.word_maps):
                if self.worded[row] > 0:
                    out[f"{name}{part}/word_hit"] = 100 * self.word_hit[row, i] / self.worded[row]
        return out
