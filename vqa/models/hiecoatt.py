"""Hierarchical Question-Image Co-Attention (Lu, Yang, Batra, Parikh, NeurIPS 2016, arXiv 1606.00061).

One composition of ``VQAModel``: the question at word, phrase and question level
(``HierarchicalQuestionEncoder``), one co-attention module per level
(``HierarchicalCoAttention``: parallel or alternating, Sec. 3.3) and the recursive answer MLP
(``RecursiveAnswerHead``, Sec. 3.4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from vqa.models.attention import Attended, Attention, MapNames
from vqa.models.coattention import AlternatingCoAttention, CoAttention
from vqa.models.head import RecursiveAnswerHead
from vqa.models.model import VQAModel
from vqa.models.question import HierarchicalQuestionEncoder, TextInputs

LEVELS: tuple[str, ...] = ("word", "phrase", "question")


class HierarchicalCoAttention(Attention):
    """Co-attention at each of the question encoder's levels; ``fused`` is the (v^, q^) pair of
    every level, as the recursive head reads them. Maps: one per level, over regions and words.

    Args:
        dim: feature size ``d``.
        dropout: inside each co-attention module.
        coattention: builds one module per level from ``(dim, hidden, dropout)``;
            ``AlternatingCoAttention`` (the reference code's default) or ``ParallelCoAttention``.
        hidden: attention size ``k``.
        answer_hidden: widths of the recursive head's h^w, h^p, h^s.
        level_dropout, level_answers: the head's (``RecursiveAnswerHead``); 0 in the paper.
    """

    maps = MapNames(LEVELS, LEVELS)

    def __init__(self, dim: int = 512, dropout: float = 0.5,
                 coattention: Callable[[int, int, float], CoAttention] = AlternatingCoAttention,
                 hidden: int = 512, answer_hidden: int | tuple[int, int, int] = (512, 512, 1024),
                 level_dropout: float = 0.0, level_answers: float = 0.0) -> None:
        super().__init__()
        self.coattention = nn.ModuleList(coattention(dim, hidden, dropout) for _ in LEVELS)
        self.out_dim, self.answer_hidden = dim, answer_hidden
        self.level_dropout, self.level_answers = level_dropout, level_answers

    def precompute(self, v: torch.Tensor, v_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Every level's ``image_projection`` of V: L x (B_img, N, k). Three products rather than
        one fused (B_img*N, D) x (D, L*k): on a 2-core CPU, forward + backward for V of (128, 196,
        512) in bf16 took 400 ms fused (plus the copy that lays the result out per level)
        against 315 ms for the three."""
        return tuple(c.image_projection(v) for c in self.coattention)

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor | None, q: Sequence[torch.Tensor],
                q_mask: torch.Tensor, pre: tuple[torch.Tensor, ...] = ()) -> Attended:
        pre = pre or (None,) * len(LEVELS)
        pairs, a_v, a_q = [], [], []
        for words, coatt, proj in zip(q, self.coattention, pre, strict=True):
            v_hat, q_hat, av, aq = coatt(v, words, q_mask, proj, v_mask)
            pairs.append((v_hat, q_hat))
            a_v.append(av)
            a_q.append(aq)
        return Attended(pairs, torch.stack(a_v, 1), torch.stack(a_q, 1))  # (B, L, N), (B, L, T)

    def answer_head(self, num_answers: int, dropout: float) -> nn.Module:
        return RecursiveAnswerHead(self.out_dim, self.answer_hidden, num_answers, dropout,
                                   self.level_dropout, self.level_answers)


class HieCoAtt(VQAModel):
    """The full model; parts are swappable by config. Built with no options it is the paper's
    model as the reference code (HieCoAttenVQA) builds it: alternating co-attention (its default
    ``co_atten_type``), d = k = 512, a 2-layer LSTM, the answer MLP 512 / 512 / 1024 wide, dropout
    0.5; with ``image_dim=2048`` for ResNet-152 grids. Departures are named where they are made
    (``vqa.models.question``, ``vqa.models.coattention``, ``VQAModel.regions``).

    Args:
        vocab_size, num_answers, image_encoder, question_encoder, image_dim, text_model, dim,
            dropout, box_geometry, blind: as for ``VQAModel``.
        coattention: builds one co-attention module per level from ``(dim, hidden, dropout)``;
            ``ParallelCoAttention`` or ``AlternatingCoAttention`` (or your own ``CoAttention``).
        hidden: attention size ``k``.
        answer_hidden: widths of the answer MLP's h^w, h^p, h^s (``RecursiveAnswerHead``); one
            number sets all three (checkpoints trained before the reference widths were the
            default hold 1024 here: they load with it).
        level_dropout: drops whole levels before the answer MLP in training
            (``RecursiveAnswerHead``); 0, the paper's model, unless set.
        level_answers: weight of each level's own answer loss in training
            (``RecursiveAnswerHead``); 0, the paper's model, unless set.
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        image_encoder: nn.Module | None = None,
        coattention: Callable[[int, int, float], nn.Module] = AlternatingCoAttention,
        question_encoder: Callable[[TextInputs, int, float], nn.Module] = HierarchicalQuestionEncoder,
        image_dim: int | None = None,
        text_model: str | None = None,
        dim: int = 512,
        hidden: int = 512,
        answer_hidden: int | tuple[int, int, int] = (512, 512, 1024),
        dropout: float = 0.5,
        box_geometry: bool = False,
        blind: bool = False,
        level_dropout: float = 0.0,
        level_answers: float = 0.0,
    ) -> None:
        attention = partial(HierarchicalCoAttention, coattention=coattention, hidden=hidden,
                            answer_hidden=answer_hidden, level_dropout=level_dropout,
                            level_answers=level_answers)
        super().__init__(vocab_size, num_answers, attention, image_encoder, question_encoder,
                         image_dim=image_dim, text_model=text_model, dim=dim, dropout=dropout,
                         box_geometry=box_geometry, blind=blind)
        self._register_load_state_dict_pre_hook(_earlier_layout)

    @property
    def coattention(self) -> nn.ModuleList:
        """The per-level co-attention modules (word, phrase, question)."""
        return self.attention.coattention


def _earlier_layout(state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the mechanism interface hold the levels' modules as
    ``coattention.{i}``; they are ``attention.coattention.{i}`` now (same order, same tensors)."""
    old = prefix + "coattention."
    for key in [k for k in state if k.startswith(old)]:
        state[prefix + "attention." + key[len(prefix):]] = state.pop(key)
