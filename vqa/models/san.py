"""Stacked attention networks (Yang, He, Gao, Deng, Smola, CVPR 2016, arXiv 1511.02274).

The question vector queries the image; the attended image vector is added to the query, which
queries again, for ``hops`` layers (Sec. 3.3, Eq. 15-19). There is no attention over words.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vqa.models.attention import (
    Attended,
    Attention,
    MapNames,
    attend,
    last_state,
    masked_softmax,
    no_maps,
    score,
)
from vqa.models.dropout import Dropout


class StackedAttention(Attention):
    """``h_A = tanh(W_I v_I + (W_Q u + b_A))`` (B, N, k), Eq. 15; ``p_I = softmax(W_P h_A +
    b_P)``, Eq. 16; ``u <- sum_i p_i v_i + u``, Eq. 17 and 19, from ``u = v_Q``, the question
    vector: the question encoder's last level at the last word (the LSTM's final state, as in
    the paper's LSTM model). Each hop has its own weights; ``W_I v_I`` is computed once per image.
    Maps: ``hop1``, ``hop2``, ... over regions. The answer layer is ``softmax(W_u u + b_u)``.

    Args:
        dim: feature size ``d`` of regions and question.
        dropout: on ``h_A`` before the scores (as HieCoAtt's modules do; the SAN paper does not
            say where it drops out) and before the answer layer.
        hops: stacked attention layers (the paper's best: 2).
        hidden: attention size ``k`` (default ``d``).
    """

    def __init__(self, dim: int = 512, dropout: float = 0.5, hops: int = 2,
                 hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.w_i = nn.ModuleList(nn.Linear(dim, hidden, bias=False) for _ in range(hops))
        self.w_q = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(hops))  # bias: b_A
        self.w_p = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(hops))
        self.drop = Dropout(dropout)
        self.maps = MapNames(tuple(f"hop{i + 1}" for i in range(hops)))
        self.out_dim = dim

    def precompute(self, v: torch.Tensor, v_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return tuple(w(v) for w in self.w_i)  # hops x (B_img, N, k)

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        u = last_state(q[-1], q_mask)  # v_Q: (B, D)
        maps = []
        for i, (w_q, w_p) in enumerate(zip(self.w_q, self.w_p, strict=True)):
            wv = pre[i] if pre else self.w_i[i](v)  # W_I v_I: (B, N, k)
            h = torch.tanh(wv + w_q(u).unsqueeze(1))  # (B, N, k) + (B, 1, k), Eq. 15
            p = masked_softmax(score(self.drop(h), w_p), v_mask)  # (B, N), Eq. 16
            u = attend(p, v) + u  # (B, D), Eq. 17 / 19
            maps.append(p)
        return Attended(u, torch.stack(maps, 1), no_maps(len(u), q_mask.shape[1], v))

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        return nn.Sequential(Dropout(dropout), nn.Linear(self.out_dim, num_answers))
