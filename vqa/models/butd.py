"""Top-down attention (Anderson et al., "Bottom-Up and Top-Down Attention", CVPR 2018, arXiv
1707.07998), as Teney, Anderson, He, van den Hengel specify its VQA model ("Tips and Tricks for
Visual Question Answering", CVPR 2018, arXiv 1708.02711, Sec. 3, whose notation is used below):
question-guided attention over regions with gated tanh layers, one glimpse, no attention over
words.
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


class GatedTanh(nn.Module):
    """``f(x) = tanh(W x + b) * sigmoid(W' x + b')`` (Teney et al.), both products
    in one (in -> 2 out) linear layer."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gate(self.linear(x))


def gate(x: torch.Tensor) -> torch.Tensor:
    """(..., 2k) pre-activations -> (..., k): the tanh half times the sigmoid half."""
    y, g = x.chunk(2, -1)
    return torch.tanh(y) * torch.sigmoid(g)


class TopDownAttention(Attention):
    """``y_i = f_a([v_i; q])``, ``a = softmax(w_a^T y)`` over regions, ``v^ = sum_i a_i v_i``
    (image attention); ``h = f_q(q) * f_v(v^)`` (multimodal fusion). ``q`` is the question encoder's last
    level at the last word (the paper's GRU final state). ``f_a`` of the concatenation is split
    into ``W_v v_i + W_q q``, and ``W_v v_i`` is computed once per image. The answer head is
    ``W_o f_o(h)`` (output classifier), trained with BCE in the paper (``loss: bce``). Map: ``top-down``.

    Args:
        dim: feature size ``d`` of regions and question.
        dropout: on ``y`` before the scores, and before the answer layers (the paper does not
            say where it drops out; bottom-up-attention-vqa drops out there).
        hidden: size of the gated tanh layers (default ``d``; the paper: 512).
        uniform_steps: attention is uniform (the scores are zeroed) for this many training
            forward passes, then learned. Not in the paper, whose regions are fixed pretrained
            features (0 turns it off). Trained from scratch with a CNN, the learned attention
            settles on the background before the features say where objects are; on shapes, 4
            epochs of uniform attention first make it learn (``docs/results/mechanisms.md``).
    """

    maps = MapNames(("top-down",))

    def __init__(self, dim: int = 512, dropout: float = 0.5, hidden: int | None = None,
                 uniform_steps: int = 0) -> None:
        super().__init__()
        hidden = hidden or dim
        self.f_a_v = nn.Linear(dim, 2 * hidden)  # f_a's weights on v_i (with its biases)
        self.f_a_q = nn.Linear(dim, 2 * hidden, bias=False)  # ... and on q
        self.w_a = nn.Linear(hidden, 1)
        self.f_q, self.f_v = GatedTanh(dim, hidden), GatedTanh(dim, hidden)
        self.drop = Dropout(dropout)
        self.out_dim = hidden
        self.uniform_steps = uniform_steps
        if uniform_steps:  # training passes so far, saved in checkpoints (absent: the paper's model)
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def precompute(self, v: torch.Tensor, v_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return (self.f_a_v(v),)  # (B_img, N, 2k)

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        q_vec = last_state(q[-1], q_mask)  # (B, D)
        wv = pre[0] if pre else self.f_a_v(v)  # (B, N, 2k)
        y = gate(wv + self.f_a_q(q_vec).unsqueeze(1))  # (B, N, k): f_a([v_i; q])
        s = score(self.drop(y), self.w_a)  # (B, N)
        if self.uniform_steps:
            if self.training:
                self.steps += 1
            s = s * (self.steps > self.uniform_steps)  # 0 in the warm-up: uniform, no host sync
        a = masked_softmax(s, v_mask)  # (B, N)
        h = self.f_q(q_vec) * self.f_v(attend(a, v))  # (B, k): fusion
        return Attended(h, a.unsqueeze(1), no_maps(len(h), q_mask.shape[1], v))

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        """``s = W_o f_o(h)`` (a sigmoid under ``loss: bce``), f_o 2k wide."""
        return nn.Sequential(Dropout(dropout), GatedTanh(self.out_dim, 2 * self.out_dim),
                             Dropout(dropout), nn.Linear(2 * self.out_dim, num_answers))
