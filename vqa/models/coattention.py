"""Parallel and alternating co-attention (Lu et al. 2016, Sec. 3.3).

A co-attention module takes image regions V (B, N, D), question features Q (B, T, D), the question
mask (B, T), ``v_proj`` (B, N, k), its ``image_projection`` of V, and the region mask (B, N), and
returns the attended image vector v^ (B, D), question vector q^ (B, D) and the two attention maps
a^v (B, N) and a^q (B, T). ``image_projection`` is the one product with V that does not depend on
the question: ``HierarchicalCoAttention`` computes it once per image, then it is gathered per
question. Padded words and regions get ``-inf`` before every softmax; a question with no words at
all gets zero word attention.
"""

from __future__ import annotations

import torch
from torch import nn

from vqa.models.attention import attend, masked_softmax, score
from vqa.models.dropout import Dropout

CoAttentionOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class CoAttention(nn.Module):
    """Interface of a co-attention level: ``image_projection`` maps V (B, N, D) to (B, N, k)
    independently of the question; ``forward(v, q, q_mask, v_proj, v_mask)`` returns (v^, q^, a^v,
    a^q)."""

    @property
    def image_projection(self) -> nn.Linear:
        raise NotImplementedError

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor,
                v_proj: torch.Tensor | None = None, v_mask: torch.Tensor | None = None
                ) -> CoAttentionOutput:
        raise NotImplementedError


def _count(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Real items of each row of ``x`` (B, M, D) under ``mask`` (B, M), at least 1: (B, 1, 1)."""
    if mask is None:
        return x.new_tensor(float(x.shape[1]))
    return mask.sum(1).clamp(min=1).to(x.dtype)[:, None, None]


class ParallelCoAttention(CoAttention):
    """Image and question attend to each other at once through the affinity matrix C.

    ``C = tanh(Q^T W_b V)`` (Eq. 3); ``H^v = tanh(W_v V + (W_q Q) C)``, ``H^q = tanh(W_q Q +
    (W_v V) C^T)``, ``a^v = softmax(w_hv^T H^v)``, ``a^q = softmax(w_hq^T H^q)`` (Eq. 4).
    C is computed as ``(Q^T W_b) V``: T d^2 multiply-adds instead of N d^2 for ``Q^T (W_b V)``.
    Departure from the paper: affinities of padded words and regions are zeroed so that they add
    nothing to H^v and H^q.

    Args:
        dim: feature size ``d``.
        hidden: attention size ``k``.
        dropout: on H^v and H^q before the attention scores, as in the reference code.
        affinity_mean: divide ``(W_q Q) C`` by the number of real words and ``(W_v V) C^T`` by
            the number of real regions: means instead of Eq. 4's sums. Not in the paper (off by
            default). With the sums, ``C^T`` adds up N region vectors into each word's H^q: on
            shapes' 64 regions its pre-activation reaches about 30 to 50 and nearly all of H^q
            sits on tanh's flat tails, where no gradient reaches the word attention
            (``docs/results/mechanisms.md``).
        bias: biases on ``W_b V``, ``W_v V`` and ``W_q Q``, as the reference code's
            ``parallel_atten`` has them (its three ``nn.Linear``); Eq. 3-4 have none (the
            default). With them, ``C = tanh(Q^T (W_b V + b_b))`` holds a term linear in Q alone.
            On shapes, with ``affinity_mean``, they took 5 seeds from 93.32 ± 3.35 % to
            98.17 ± 0.22 % (``docs/results/mechanisms.md``).
    """

    def __init__(self, dim: int = 512, hidden: int = 512, dropout: float = 0.5,
                 affinity_mean: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.affinity_mean = affinity_mean
        self.w_b = nn.Linear(dim, dim, bias=bias)
        self.w_v = nn.Linear(dim, hidden, bias=bias)
        self.w_q = nn.Linear(dim, hidden, bias=bias)
        self.w_hv = nn.Linear(hidden, 1)
        self.w_hq = nn.Linear(hidden, 1)
        self.drop = Dropout(dropout)

    @property
    def image_projection(self) -> nn.Linear:
        return self.w_v

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor,
                v_proj: torch.Tensor | None = None, v_mask: torch.Tensor | None = None
                ) -> CoAttentionOutput:
        wv = self.w_v(v) if v_proj is None else v_proj  # W_v V: (B, N, k)
        qb = q @ self.w_b.weight  # Q^T W_b: (B, T, D) x (D, D) -> (B, T, D)
        # C^T, regions first, so that no (B, D, N) transpose of V is copied in the backward pass
        c_t = v @ qb.transpose(1, 2)  # (B, N, D) x (B, D, T) -> (B, N, T)
        if self.w_b.bias is not None:
            c_t = c_t + (q @ self.w_b.bias).unsqueeze(1)  # + Q^T b_b: (B, 1, T)
        c_t = torch.tanh(c_t)  # Eq. 3
        c_t = c_t * q_mask.unsqueeze(1).to(c_t.dtype)
        if v_mask is not None:
            c_t = c_t * v_mask.unsqueeze(2).to(c_t.dtype)
        wq = self.w_q(q)  # (B, T, k)
        q_sum = c_t @ wq  # (B, N, T) x (B, T, k) -> (B, N, k)
        v_sum = c_t.transpose(1, 2) @ wv  # (B, T, N) x (B, N, k) -> (B, T, k)
        if self.affinity_mean:
            q_sum, v_sum = q_sum / _count(q_mask, q), v_sum / _count(v_mask, v)
        h_v = torch.tanh(wv + q_sum)  # (B, N, k)
        h_q = torch.tanh(wq + v_sum)  # (B, T, k)
        a_v = masked_softmax(score(self.drop(h_v), self.w_hv), v_mask)  # (B, N), Eq. 4
        a_q = masked_softmax(score(self.drop(h_q), self.w_hq), q_mask)  # (B, T)
        return attend(a_v, v), attend(a_q, q), a_v, a_q


class GuidedAttention(nn.Module):
    """One alternating step ``x^ = A(X; g)``: ``H = tanh(W_x X + (W_g g) 1^T)``, ``a^x =
    softmax(w_hx^T H)``, ``x^ = sum_i a^x_i x_i`` (Eq. 6).

    Args:
        dim, hidden, dropout: as for the co-attention modules.
        guided: ``False`` for the first step, whose guidance is the paper's g = 0: it has no
            ``W_g`` (a parameter no path would use, which DDP rejects).
    """

    def __init__(self, dim: int, hidden: int, dropout: float, guided: bool = True) -> None:
        super().__init__()
        self.w_x = nn.Linear(dim, hidden)
        self.w_g = nn.Linear(dim, hidden, bias=False) if guided else None
        self.w_h = nn.Linear(hidden, 1)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None, mask: torch.Tensor | None,
                x_proj: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_proj``: ``W_x X`` (B, M, k) when already computed."""
        h = self.w_x(x) if x_proj is None else x_proj  # (B, M, k)
        if self.w_g is not None:
            h = h + self.w_g(g).unsqueeze(1)  # (B, M, k) + (B, 1, k)
        a = masked_softmax(score(self.drop(torch.tanh(h)), self.w_h), mask)  # (B, M)
        return attend(a, x), a


class AlternatingCoAttention(CoAttention):
    """Summarise the question, attend to the image with it, then attend to the question with the
    attended image (Eq. 5-6), each step with its own parameters; ``W_x V`` of the image step is
    the ``image_projection``."""

    def __init__(self, dim: int = 512, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.summarise = GuidedAttention(dim, hidden, dropout, guided=False)
        self.image = GuidedAttention(dim, hidden, dropout)
        self.question = GuidedAttention(dim, hidden, dropout)

    @property
    def image_projection(self) -> nn.Linear:
        return self.image.w_x

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor,
                v_proj: torch.Tensor | None = None, v_mask: torch.Tensor | None = None
                ) -> CoAttentionOutput:
        s, _ = self.summarise(q, None, q_mask)  # step 1: (B, D)
        v_hat, a_v = self.image(v, s, v_mask, v_proj)  # step 2: image guided by the question summary
        q_hat, a_q = self.question(q, v_hat, q_mask)  # step 3: question guided by the image
        return v_hat, q_hat, a_v, a_q
