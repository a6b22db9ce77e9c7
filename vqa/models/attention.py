"""The interface every attention mechanism implements, and the masked operations they share.

A mechanism is one module. It receives region features V (B, N, D) with their mask (B, N; ``None`` when every
region is real, as on a grid) and the
question encoder's levels, each (B, T, D), with the word mask (B, T); single-level mechanisms read
the last level (the question encoder's LSTM or transformer states). It returns an ``Attended``:
what its answer head reads, and its attention maps, named in ``maps``. A map is over regions
(B, N), over words (B, T), or both; a mechanism without maps on one side (or at all) says so with
empty names there. Padded regions and words get exactly zero attention; a row with nothing real
gets zeros, never NaN.

``precompute`` is the optional per-image hook: products with V that do not depend on the
question run once per image (``VQAModel`` gathers them per question), which keeps batches grouped
by image fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn


@dataclass(frozen=True)
class MapNames:
    """The names of a mechanism's attention maps: ``regions`` the rows of its maps over regions,
    ``words`` those over words. A name in both is one map with both sides (a HieCoAtt level)."""

    regions: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every map once, regions' order first."""
        return tuple(dict.fromkeys(self.regions + self.words))


class Attended(NamedTuple):
    """A mechanism's output: ``fused`` is what its answer head reads; ``regions`` (B, M_v, N) and
    ``words`` (B, M_q, T) stack the maps named by ``MapNames.regions`` and ``.words``; ``extra``
    holds further maps by output name (BAN's joint word x region maps)."""

    fused: Any
    regions: torch.Tensor
    words: torch.Tensor
    extra: dict[str, torch.Tensor] | None = None


class Attention(nn.Module):
    """Interface of an attention mechanism.

    Attributes:
        maps: the names of the maps ``forward`` returns.
        out_dim: the size of ``fused`` when it is one vector per question.
    """

    maps: MapNames = MapNames()
    out_dim: int

    def precompute(self, v: torch.Tensor, v_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Question-independent products with V (each (B_img, ...)), once per image."""
        return ()

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        raise NotImplementedError

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        """The answer classifier of the mechanism's paper, over ``fused``."""
        raise NotImplementedError


def no_maps(batch: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """An empty stack of maps, (B, 0, length): a side without attention."""
    return like.new_zeros(batch, 0, length)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` with ``mask == False`` positions excluded (``mask`` broadcasts to
    ``scores``). A row with every position masked gives zeros, not NaN, in the forward and
    backward pass."""
    if mask is None:
        return scores.softmax(dim)
    mask = mask.expand_as(scores)
    empty = ~mask.any(dim, keepdim=True)
    # Fully masked rows keep finite scores (a uniform softmax) and are then zeroed.
    scores = scores.masked_fill(~mask & ~empty, float("-inf"))
    return scores.softmax(dim).masked_fill(empty, 0.0)


def score(h: torch.Tensor, w_h: nn.Linear) -> torch.Tensor:
    """Attention scores ``w_h^T H``: (B, M, k) -> (B, M). An elementwise product and sum, whose
    backward is elementwise too; as a (k -> 1) matrix product its backward is an outer product
    (inner dimension 1): with the softmax, forward + backward at (128, 196, 512) in bf16 took
    29.5 ms on a 2-core CPU against 19.1 ms this way."""
    return (h * w_h.weight[0].to(h.dtype)).sum(-1) + w_h.bias


def attend(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Weighted sum of features: (B, M) x (B, M, D) -> (B, D)."""
    return (weights.unsqueeze(1) @ x).squeeze(1)  # (B, 1, M) x (B, M, D) -> (B, 1, D)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real rows: (B, M, D), (B, M) -> (B, D); zeros when there are none."""
    if mask is None:
        return x.mean(1)
    w = mask.to(x.dtype)
    return attend(w / w.sum(1, keepdim=True).clamp(min=1), x)


def last_state(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's state at its last real token (the final state of a left-to-right RNN over
    right-padded input): (B, T, D), (B, T) -> (B, D); zeros for an empty question."""
    last = (mask.long().sum(1) - 1).clamp(min=0)  # (B,)
    out = x[torch.arange(len(x), device=x.device), last]  # (B, D)
    return out * mask.any(1, keepdim=True).to(x.dtype)
