"""The no-attention baseline every table is read against.

Regions and words are averaged (their masks excluding padding), projected and fused by an
elementwise product, as the "deeper LSTM Q + norm I" model of Antol et al., ICCV 2015 (arXiv
1505.00468) fuses its image and question vectors, here with masked means in place of its
whole-image feature and LSTM state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vqa.models.attention import Attended, Attention, masked_mean, no_maps
from vqa.models.dropout import Dropout


class NoAttention(Attention):
    """``v = mean_i v_i``, ``q = mean_t q_t`` (real regions and words; the question encoder's
    last level), ``h = tanh(W_v v) * tanh(W_q q)``; no maps.

    Args:
        dim: feature size ``d`` of regions and words.
        dropout: on the fused vector and in the answer MLP.
        hidden: size of ``h``, and the answer MLP's hidden layer (default 2 d).
    """

    def __init__(self, dim: int = 512, dropout: float = 0.5, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 2 * dim
        self.w_v = nn.Linear(dim, hidden)
        self.w_q = nn.Linear(dim, hidden)
        self.out_dim = hidden

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        v_bar, q_bar = masked_mean(v, v_mask), masked_mean(q[-1], q_mask)  # (B, D) each
        h = torch.tanh(self.w_v(v_bar)) * torch.tanh(self.w_q(q_bar))  # (B, hidden)
        return Attended(h, no_maps(len(h), v.shape[1], v), no_maps(len(h), q_mask.shape[1], v))

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        """An MLP with one tanh hidden layer and dropout (Antol et al. use two hidden layers)."""
        return nn.Sequential(Dropout(dropout), nn.Linear(self.out_dim, self.out_dim), nn.Tanh(),
                             Dropout(dropout), nn.Linear(self.out_dim, num_answers))
