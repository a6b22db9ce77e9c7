"""Benchmark accuracy as a torchmetrics ``Metric`` whose numbers equal the official evaluation.

The soft target of an answer is its benchmark score for that question (``soft_targets``: the VQA
accuracy, VizWiz's, or exact match), so the target read at the predicted index is exactly the
official per-question score. States are sums, so the metric reduces correctly across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from vqa.data.example import ANSWER_TYPES


class VQAAccuracy(Metric):
    """Mean benchmark score in percent, overall and per category.

    Args:
        groups: the category names (``vqa.data.preprocess.groups``; default the VQA answer types
            ``yes_no``, ``number``, ``other``). An example may fall in one category per axis
            (GQA: a structural and a semantic type).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, groups: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.groups = list(groups if groups is not None
                           else sorted(t.replace("/", "_") for t in ANSWER_TYPES))
        size = len(self.groups) + 1  # slot 0: every question
        self.add_state("score", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, groups: torch.Tensor,
               scored: torch.Tensor | None = None) -> None:
        """``logits`` (B, A), ``target`` (B, A) soft scores, ``groups`` (B, G) category indices
        (-1: none on that axis; G may be 0), ``scored`` (B,) the questions the benchmark scores
        (default all: GQA's evaluation skips its unbalanced questions)."""
        score = target.gather(1, logits.argmax(1, keepdim=True)).squeeze(1).double()  # (B,)
        slot = torch.cat([groups.new_zeros(len(groups), 1), groups + 1], 1)  # (B, 1 + G)
        valid = torch.cat([groups.new_ones(len(groups), 1, dtype=torch.bool), groups >= 0], 1)
        if scored is not None:
            valid &= scored[:, None]
        scores = score[:, None].expand_as(slot)  # (B, 1 + G)
        self.score.index_add_(0, slot[valid], scores[valid])
        self.count.index_add_(0, slot[valid], torch.ones_like(scores[valid]))

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"": 100 * self.score[0] / self.count[0].clamp(min=1)}
        for i, name in enumerate(self.groups, 1):
            if self.count[i] > 0:
                out[name] = 100 * self.score[i] / self.count[i]
        return out
