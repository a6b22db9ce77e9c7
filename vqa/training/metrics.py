"""VQA accuracy as a torchmetrics ``Metric`` whose numbers equal the official evaluation.

The soft target of an answer is its official accuracy for that question (``soft_targets``), so the
target read at the predicted index is exactly the official per-question score. States are sums, so
the metric reduces correctly across processes.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from vqa.data.formats import ANSWER_TYPES


class VQAAccuracy(Metric):
    """Mean official accuracy in percent, overall and per answer type (yes/no, number, other)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("score", torch.zeros(len(ANSWER_TYPES) + 1, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(len(ANSWER_TYPES) + 1, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, answer_type: torch.Tensor) -> None:
        """``logits`` (B, A), ``target`` (B, A) soft scores, ``answer_type`` (B,) index or -1."""
        score = target.gather(1, logits.argmax(1, keepdim=True)).squeeze(1).double()  # (B,)
        group = torch.where(answer_type < 0, len(ANSWER_TYPES), answer_type)  # unknown -> last slot
        self.score.index_add_(0, group, score)
        self.count.index_add_(0, group, torch.ones_like(score))

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"": 100 * self.score.sum() / self.count.sum().clamp(min=1)}
        for i, name in enumerate(ANSWER_TYPES):
            if self.count[i] > 0:
                out[name.replace("/", "_")] = 100 * self.score[i] / self.count[i]
        return out
