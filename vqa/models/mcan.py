"""Deep modular co-attention (Yu, Yu, Cui, Tao, Tian, "Deep Modular Co-Attention Networks for
Visual Question Answering", CVPR 2019, arXiv 1906.10770).

The question's words go through ``depth`` self-attention (SA) layers; the regions go through
``depth`` self-attention + guided-attention (SGA) layers, guided by the encoder's last output
(the encoder-decoder variant, Sec. 4.1). Attentional reduction (Eq. 8) turns each side into one
vector; the two are fused by a sum and a layer norm (Eq. 9). Attention products go through
``torch.nn.functional.scaled_dot_product_attention``, except in the last SGA layer's guided
attention, whose weights are kept as a map. The first SGA layer's self-attention over the regions
does not depend on the question: it runs once per image (``precompute``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vqa.models.attention import Attended, Attention, MapNames, attend, masked_mean, masked_softmax
from vqa.models.dropout import Dropout


def key_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) real keys -> (B, 1, 1, S) for every head and query; a row without a real key
    attends to all of them (finite), and ``MultiHeadAttention`` then zeroes its output."""
    if mask is None:
        return None
    return (mask | ~mask.any(1, keepdim=True))[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """``MHA(X, Y) = [head_1, ..., head_h] W_o``, ``head_j = softmax(X W_j^Q (Y W_j^K)^T /
    sqrt(d_h)) Y W_j^V`` (Eq. 1-2), dropout on the attention weights as in the reference code."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.heads, self.p = heads, dropout
        self.drop = Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        return x.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # (B, h, S, d_h)

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor | None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries ``x`` (B, M, D), keys and values ``y`` (B, S, D) -> (B, M, D), and the weights
        (B, h, M, S) when asked for."""
        q, k, v = self._split(self.q(x)), self._split(self.k(y)), self._split(self.v(y))
        mask, weights = key_mask(y_mask), None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, M, S)
            weights = masked_softmax(scores, mask)
            out = self.drop(weights) @ v  # (B, h, M, S) x (B, h, S, d_h) -> (B, h, M, d_h)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.p if self.training else 0.0)
        if y_mask is not None:  # nothing to attend to (an empty question): no message
            out = out * y_mask.any(1).to(out.dtype)[:, None, None, None]
        return self.o(out.transpose(1, 2).flatten(2)), weights  # (B, M, D)


class FeedForward(nn.Sequential):
    """``FFN(X) = FC(ReLU(FC(X)))`` with dropout inside (Eq. 3)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, dim))


class SALayer(nn.Module):
    """Self-attention unit: ``X <- LN(X + MHA(X, X))``, ``X <- LN(X + FFN(X))`` (Sec. 3.1)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attention(x, x, mask)[0]))
        return self.norm2(x + self.drop(self.ffn(x)))


class SGALayer(nn.Module):
    """Self-attention then guided attention: ``Y <- LN(Y + MHA(Y, Y))``, ``Y <- LN(Y + MHA(Y,
    X))``, ``Y <- LN(Y + FFN(Y))`` (Sec. 3.1): each region attends to the question's words."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, heads, dropout)
        self.guided = MultiHeadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))
        self.drop = Dropout(dropout)

    def self_attend(self, y: torch.Tensor, y_mask: torch.Tensor | None) -> torch.Tensor:
        """The self-attention step, which does not depend on the question."""
        return self.norm1(y + self.drop(self.self_attention(y, y, y_mask)[0]))

    def guide(self, y: torch.Tensor, x: torch.Tensor, x_mask: torch.Tensor,
              need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The guided-attention and feed-forward steps."""
        g, weights = self.guided(y, x, x_mask, need_weights)  # (B, N, D), (B, h, N, T)
        y = self.norm2(y + self.drop(g))
        return self.norm3(y + self.drop(self.ffn(y))), weights

    def forward(self, y: torch.Tensor, y_mask: torch.Tensor | None, x: torch.Tensor,
                x_mask: torch.Tensor, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.guide(self.self_attend(y, y_mask), x, x_mask, need_weights)


class AttentionalReduction(nn.Module):
    """``alpha = softmax(MLP(X))``, ``x~ = sum_i alpha_i x_i`` (Eq. 8), then ``W x~``, the
    projection of Eq. 9 (to ``out`` wide)."""

    def __init__(self, dim: int, out: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), Dropout(dropout), nn.Linear(dim, 1))
        self.proj = nn.Linear(dim, out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = masked_softmax(self.mlp(x).squeeze(-1), mask)  # (B, M)
        return self.proj(attend(alpha, x)), alpha  # (B, out), (B, M)


class ModularCoAttention(Attention):
    """MCAN's encoder-decoder (Fig. 4b): ``X`` = the question encoder's last level (the paper's
    LSTM over GloVe), ``Y`` = the regions; ``z = LayerNorm(W_x^T x~ + W_y^T y~)`` (Eq. 9); the
    answer layer is linear (a sigmoid under ``loss: bce``, as in the paper).

    Maps: ``reduce``, the attentional reductions' weights over regions and over words; ``guided``,
    over words: the last SGA layer's guided attention, averaged over heads and real regions.

    Departure: ``VQAModel`` projects regions with linear + tanh; MCAN's projection is linear.

    Args:
        dim: feature size ``d`` (MCAN-small: 512).
        dropout: throughout (MCAN: 0.1; the model's ``dropout``).
        depth: SA and SGA layers (MCAN: 6).
        heads: attention heads (MCAN: 8).
        ffn: the feed-forward layers' width (default 4 d: 2048 for MCAN-small).
        out: the fused size ``d_z`` (default 2 d: 1024 for MCAN-small).
    """

    maps = MapNames(("reduce",), ("reduce", "guided"))

    def __init__(self, dim: int = 512, dropout: float = 0.1, depth: int = 6, heads: int = 8,
                 ffn: int | None = None, out: int | None = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        ffn, out = ffn or 4 * dim, out or 2 * dim
        self.encoder = nn.ModuleList(SALayer(dim, heads, ffn, dropout) for _ in range(depth))
        self.decoder = nn.ModuleList(SGALayer(dim, heads, ffn, dropout) for _ in range(depth))
        self.reduce_q = AttentionalReduction(dim, out, dropout)
        self.reduce_v = AttentionalReduction(dim, out, dropout)
        self.norm = nn.LayerNorm(out)
        self.out_dim = out

    def precompute(self, v: torch.Tensor, v_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The first SGA layer's self-attention over the regions: it does not depend on the
        question, so it runs once per image (B_img, N, D)."""
        return (self.decoder[0].self_attend(v, v_mask),)

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        x = q[-1]  # (B, T, D)
        for layer in self.encoder:
            x = layer(x, q_mask)
        last = len(self.decoder) - 1
        y, guided = self.decoder[0].guide(pre[0] if pre else self.decoder[0].self_attend(v, v_mask),
                                          x, q_mask, need_weights=last == 0)  # (B, N, D)
        for i, layer in enumerate(self.decoder[1:], 1):
            y, guided = layer(y, v_mask, x, q_mask, need_weights=i == last)
        x_red, a_q = self.reduce_q(x, q_mask)  # (B, out), (B, T)
        y_red, a_v = self.reduce_v(y, v_mask)  # (B, out), (B, N)
        z = self.norm(x_red + y_red)  # (B, out), Eq. 9
        guided = masked_mean(guided.mean(1), v_mask)  # (B, h, N, T) -> (B, N, T) -> (B, T)
        guided = guided * q_mask.to(guided.dtype)  # an empty question's uniform row: zeros
        return Attended(z, a_v.unsqueeze(1), torch.stack([a_q, guided], 1))

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        return nn.Linear(self.out_dim, num_answers)
