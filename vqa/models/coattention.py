"""Parallel and alternating co-attention (Lu et al. 2016, Sec. 3.3).

Both take image regions V (B, N, D), question features Q (B, T, D) and the question mask (B, T)
and return the attended image vector v^ (B, D), question vector q^ (B, D) and the two attention
maps a^v (B, N) and a^q (B, T). Padded words get ``-inf`` before every softmax over words.
"""

from __future__ import annotations

import torch
from torch import nn

CoAttentionOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis with ``mask == False`` positions excluded."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


def attend(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Weighted sum of features: (B, M) x (B, M, D) -> (B, D)."""
    return (weights.unsqueeze(1) @ x).squeeze(1)  # (B, 1, M) x (B, M, D) -> (B, 1, D)


class ParallelCoAttention(nn.Module):
    """Image and question attend to each other at once through the affinity matrix C.

    ``C = tanh(Q^T W_b V)`` (Eq. 3); ``H^v = tanh(W_v V + (W_q Q) C)``, ``H^q = tanh(W_q Q +
    (W_v V) C^T)``, ``a^v = softmax(w_hv^T H^v)``, ``a^q = softmax(w_hq^T H^q)`` (Eq. 4).
    Departure from the paper: affinities of padded words are zeroed so they add nothing to H^v.

    Args:
        dim: feature size ``d``.
        hidden: attention size ``k``.
        dropout: on H^v and H^q before the attention scores, as in the reference code.
    """

    def __init__(self, dim: int = 512, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.w_b = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, hidden, bias=False)
        self.w_q = nn.Linear(dim, hidden, bias=False)
        self.w_hv = nn.Linear(hidden, 1)
        self.w_hq = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor) -> CoAttentionOutput:
        affinity = torch.tanh(q @ self.w_b(v).transpose(1, 2))  # (B, T, D) x (B, D, N) -> (B, T, N), Eq. 3
        affinity = affinity * q_mask.unsqueeze(-1)
        wv, wq = self.w_v(v), self.w_q(q)  # (B, N, k), (B, T, k)
        h_v = torch.tanh(wv + affinity.transpose(1, 2) @ wq)  # (B, N, T) x (B, T, k) -> (B, N, k)
        h_q = torch.tanh(wq + affinity @ wv)  # (B, T, N) x (B, N, k) -> (B, T, k)
        a_v = self.w_hv(self.drop(h_v)).squeeze(-1).softmax(-1)  # (B, N), Eq. 4
        a_q = masked_softmax(self.w_hq(self.drop(h_q)).squeeze(-1), q_mask)  # (B, T)
        return attend(a_v, v), attend(a_q, q), a_v, a_q


class GuidedAttention(nn.Module):
    """One alternating step ``x^ = A(X; g)``: ``H = tanh(W_x X + (W_g g) 1^T)``, ``a^x =
    softmax(w_hx^T H)``, ``x^ = sum_i a^x_i x_i`` (Eq. 6). ``g = None`` is the paper's g = 0."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.w_x = nn.Linear(dim, hidden)
        self.w_g = nn.Linear(dim, hidden, bias=False)
        self.w_h = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None, mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.w_x(x)  # (B, M, k)
        if g is not None:
            h = h + self.w_g(g).unsqueeze(1)  # (B, M, k) + (B, 1, k)
        a = masked_softmax(self.w_h(self.drop(torch.tanh(h))).squeeze(-1), mask)  # (B, M)
        return attend(a, x), a


class AlternatingCoAttention(nn.Module):
    """Summarise the question, attend to the image with it, then attend to the question with the
    attended image (Eq. 5-6), each step with its own parameters."""

    def __init__(self, dim: int = 512, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.summarise = GuidedAttention(dim, hidden, dropout)
        self.image = GuidedAttention(dim, hidden, dropout)
        self.question = GuidedAttention(dim, hidden, dropout)

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor) -> CoAttentionOutput:
        s, _ = self.summarise(q, None, q_mask)  # step 1: (B, D)
        v_hat, a_v = self.image(v, s, None)  # step 2: image guided by the question summary
        q_hat, a_q = self.question(q, v_hat, q_mask)  # step 3: question guided by the image
        return v_hat, q_hat, a_v, a_q
