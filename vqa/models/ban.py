"""Bilinear attention networks (Kim, Jun, Zhang, NeurIPS 2018, arXiv 1805.07932).

Every (word, region) pair gets a low-rank bilinear attention logit; each of G glimpses has its own
softmax over all T x N pairs (Eq. 10), pools the pair's bilinear features with it (Eq. 5-6) and
adds the result to every word's feature (residual learning, Eq. 14); the words' final features
are summed. As in the authors' code (ban-vqa), the G maps are computed once from the initial
question features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vqa.models.attention import Attended, Attention, MapNames, masked_softmax
from vqa.models.dropout import Dropout


class BilinearAttention(Attention):
    """``A_g = softmax_{t,n}(p_g^T (ReLU(U^T x_t) * ReLU(V^T y_n)) + b_g)`` (Eq. 10; U, V of
    rank ``k`` x ``hidden``); ``f_g = sum_{t,n} A_g[t, n] ReLU(U_g'^T x_t) * ReLU(V_g'^T y_n)``
    (Eq. 5-6); ``x_t <- P_g f_g + x_t`` (Eq. 14); ``fused = sum_t x_t`` over real words. X is the
    question encoder's last level (the paper's GRU states), Y the regions. The answer head is
    the paper's 2-layer MLP (ReLU, 2 d wide).

    Maps: ``glimpse1`` .. ``glimpseG``, each A_g's marginals over regions and over words; the
    joint maps (B, G, T, N) are the output's ``bilinear_attention``. ReLU(V^T Y) and every
    ReLU(V_g'^T Y) are computed once per image.

    Departures from ban-vqa: no weight normalisation; padded words are masked in the maps and the
    final sum (ban-vqa masks only all-zero regions); the counting module is left out (as in the
    paper's BAN without counter rows).

    Args:
        dim: feature size ``d`` of regions and words.
        dropout: on the inputs of every bilinear projection; 0.5 between the head's layers.
        glimpses: G (the paper's BAN-8: 8).
        rank: ``k`` of the attention's low-rank projections (the paper: 3).
        hidden: width of the bilinear features (default ``d``).
    """

    def __init__(self, dim: int = 512, dropout: float = 0.2, glimpses: int = 8, rank: int = 3,
                 hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.u, self.v = nn.Linear(dim, rank * hidden), nn.Linear(dim, rank * hidden)
        self.p = nn.Parameter(torch.randn(glimpses, rank * hidden) / (rank * hidden) ** 0.5)
        self.b = nn.Parameter(torch.zeros(glimpses))
        self.u_pool = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(glimpses))
        self.v_pool = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(glimpses))
        self.proj = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(glimpses))
        self.drop = Dropout(dropout)
        self.maps = MapNames(*(tuple(f"glimpse{g + 1}" for g in range(glimpses)),) * 2)
        self.out_dim = dim

    def precompute(self, v: torch.Tensor, v_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """ReLU(V^T Y) (B_img, N, k h) and each glimpse's ReLU(V_g'^T Y) (B_img, N, h)."""
        v = self.drop(v)
        return (torch.relu(self.v(v)), *(torch.relu(w(v)) for w in self.v_pool))

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        yv, *y_pool = pre or self.precompute(v, v_mask)
        x = q[-1]  # (B, T, D)
        xu = torch.relu(self.u(self.drop(x)))  # (B, T, kh)
        logits = torch.einsum("btk,gk,bnk->bgtn", xu, self.p, yv) + self.b[:, None, None]  # Eq. 10
        b, g, t, n = logits.shape
        real = q_mask[:, :, None] if v_mask is None else q_mask[:, :, None] & v_mask[:, None, :]
        real = real.expand(b, t, n).reshape(b, 1, t * n)  # (B, 1, T*N)
        a = masked_softmax(logits.reshape(b, g, t * n), real).view(b, g, t, n)  # (B, G, T, N)
        for i, (u_pool, proj) in enumerate(zip(self.u_pool, self.proj, strict=True)):
            xp = torch.relu(u_pool(self.drop(x)))  # (B, T, h)
            f = ((a[:, i] @ y_pool[i]) * xp).sum(1)  # (B, T, N) x (B, N, h) -> (B, T, h) -> (B, h)
            x = x + proj(f).unsqueeze(1)  # (B, T, D) + (B, 1, D), Eq. 14
        fused = (x * q_mask.unsqueeze(-1).to(x.dtype)).sum(1)  # (B, D)
        return Attended(fused, a.sum(2), a.sum(3), {"bilinear_attention": a})

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Linear(self.out_dim, 2 * self.out_dim), nn.ReLU(), Dropout(0.5),
                             nn.Linear(2 * self.out_dim, num_answers))
