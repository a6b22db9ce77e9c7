"""The recursive answer MLP of Lu et al. 2016, Sec. 3.4 (Eq. 7-9)."""

from __future__ import annotations

import torch
from torch import nn

from vqa.models.dropout import Dropout


class RecursiveAnswerHead(nn.Module):
    """``h^w = tanh(W_w(q^w + v^w))``, ``h^p = tanh(W_p[q^p + v^p, h^w])``,
    ``h^s = tanh(W_s[q^s + v^s, h^p])``, ``p = softmax(W_h h^s)`` (logits are returned).

    The reference code builds it as ``recursive_atten(512, 512, 1024, 1000)``: h^w and h^p are
    ``d`` = 512 wide and only h^s is 1024 (VQA; COCO-QA: 512 throughout), so the default widths
    are (512, 512, 1024): 2,862,056 parameters for 1000 answers.

    Args:
        dim: size of the attended vectors (d).
        hidden: widths of (h^w, h^p, h^s); one number sets all three.
        num_answers: size of the answer vocabulary.
        dropout: before each linear layer, as in the reference code.
        level_dropout: in training, each question's attended pair ``q + v`` of each level is
            zeroed with this probability (the kept ones scaled by 1 / (1 - p)), so that no level
            can leave a question family to another. Not in the paper (0 turns it off); no recipe
            uses it: at 0.3 it slowed learning on shapes (``docs/results/shapes.md``).
        level_answers: weight of an auxiliary loss in training: each level answers alone from
            its own ``q + v``, ``W^a_l tanh(W'_l(q^l + v^l))`` (deep supervision), so each level
            must attend for every question family; the answer is still Eq. 9's. Not in the
            paper (0, the default, builds no extra layers).
    """

    def __init__(self, dim: int = 512, hidden: int | tuple[int, int, int] = (512, 512, 1024),
                 num_answers: int = 1000, dropout: float = 0.5, level_dropout: float = 0.0,
                 level_answers: float = 0.0) -> None:
        super().__init__()
        h_w, h_p, h_s = (hidden,) * 3 if isinstance(hidden, int) else tuple(hidden)
        self.w_w = nn.Linear(dim, h_w)
        self.w_p = nn.Linear(dim + h_w, h_p)
        self.w_s = nn.Linear(dim + h_p, h_s)
        self.w_h = nn.Linear(h_s, num_answers)
        self.drop = Dropout(dropout)
        self.level_dropout, self.level_answers = level_dropout, level_answers
        if level_answers:  # one small answer MLP per level, for the auxiliary loss only
            self.level_heads = nn.ModuleList(
                nn.Sequential(nn.Linear(dim, h), nn.Tanh(), nn.Linear(h, num_answers))
                for h in (h_w, h_p, h_s))

    def _levels(self, sums: list[torch.Tensor]) -> list[torch.Tensor]:
        """``level_dropout`` over the levels' (B, D) sums: one draw per question and level."""
        p = self.level_dropout
        if not self.training or p == 0:
            return sums
        keep = torch.rand(sums[0].shape[0], len(sums), device=sums[0].device) >= p  # (B, L)
        scale = keep.to(sums[0].dtype) / (1 - p)
        return [x * scale[:, i, None] for i, x in enumerate(sums)]

    def forward(self, levels: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``levels``: (v^, q^) pairs, each (B, D), for word, phrase, question -> logits (B, A);
        in training with ``level_answers``, also each level's own logits (B, L, A)."""
        sums = [q + v for v, q in levels]  # each (B, D)
        word, phrase, question = self._levels(sums)
        h = torch.tanh(self.w_w(self.drop(word)))  # Eq. 7
        h = torch.tanh(self.w_p(self.drop(torch.cat([phrase, h], -1))))  # Eq. 8
        h = torch.tanh(self.w_s(self.drop(torch.cat([question, h], -1))))  # Eq. 9
        logits = self.w_h(self.drop(h))
        if not (self.training and self.level_answers):
            return logits
        own = [head(self.drop(x)) for head, x in zip(self.level_heads, sums, strict=True)]
        return logits, torch.stack(own, 1)  # (B, A), (B, L, A)
