"""Hierarchical Question-Image Co-Attention (Lu, Yang, Batra, Parikh, NeurIPS 2016, arXiv 1606.00061).

Image regions are projected to ``d`` by linear + tanh; the question is encoded at word, phrase and
question level; one co-attention module per level attends to regions and words together; the
recursive MLP combines the three levels into answer logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vqa.models.coattention import AlternatingCoAttention
from vqa.models.dropout import Dropout
from vqa.models.head import RecursiveAnswerHead
from vqa.models.question import HierarchicalQuestionEncoder, TextInputs

LEVELS: tuple[str, ...] = ("word", "phrase", "question")


def _compute_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """The dtype a product runs in here: autocast's when it is on, else ``default``. Cached
    float16 features are converted once, on the device, straight to it."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return default


class HieCoAtt(nn.Module):
    """The full model; parts are swappable by config. Built with no options it is the paper's
    model as the reference code (HieCoAttenVQA) builds it: alternating co-attention (its default
    ``co_atten_type``), d = k = 512, a 2-layer LSTM, the answer MLP 512 / 512 / 1024 wide, dropout
    0.5; with ``image_dim=2048`` for ResNet-152 grids. Departures are named where they are made
    (``vqa.models.question``, ``vqa.models.coattention``, ``regions`` below).

    Args:
        vocab_size: question vocabulary size (linked from the data's input pipeline).
        num_answers: answer vocabulary size (linked from the pipeline).
        image_encoder: module mapping images (B, 3, H, W) to regions (B, N, C), with an
            ``out_dim`` attribute and a ``grid(image_size)`` method; ``None`` when the data serves
            cached features.
        coattention: builds one co-attention module per level from ``(dim, hidden, dropout)``;
            ``ParallelCoAttention`` or ``AlternatingCoAttention`` (or your own ``CoAttention``).
        question_encoder: builds the question encoder from ``(TextInputs, dim, dropout)``
            (``vqa.models.question``).
        image_dim: region feature size C of cached features (linked from the pipeline).
        text_model: the pretrained model the pipeline's tokenizer belongs to (linked; ``None``
            for the word vocabulary).
        dim: feature size ``d``; hidden: attention size ``k``.
        answer_hidden: widths of the answer MLP's h^w, h^p, h^s (``RecursiveAnswerHead``); one
            number sets all three (checkpoints trained before the reference widths were the
            default hold 1024 here: they load with it).
        dropout: dropout throughout, as in the paper (0.5).
        blind: zero the image features (a question-only ablation that keeps the architecture).
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
        blind: bool = False,
    ) -> None:
        super().__init__()
        if image_encoder is None and image_dim is None:
            raise ValueError("give an image_encoder, or image_dim for cached features")
        self.image_encoder = image_encoder
        self.image_proj = nn.Linear(image_encoder.out_dim if image_encoder is not None else image_dim, dim)
        self.question_encoder = question_encoder(TextInputs(vocab_size, text_model), dim, dropout)
        self.coattention = nn.ModuleList(coattention(dim, hidden, dropout) for _ in LEVELS)
        self.head = RecursiveAnswerHead(dim, answer_hidden, num_answers, dropout)
        self.drop = Dropout(dropout)
        self.blind = blind

    def regions(self, image: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
        """Projected region features V (B_img, N, D), once per image: linear + tanh, then
        dropout (where the reference code has it: on the 512-d output, not the raw features).
        The reference saw one question per image; here the questions of an image share V, and so
        its dropout mask, which is what lets every product with V run once per image."""
        if features is None:
            features = self.image_encoder(image)  # (B_img, N, C)
        features = features.to(_compute_dtype(features.device.type, self.image_proj.weight.dtype))
        if self.blind:
            features = torch.zeros_like(features)
        return self.drop(torch.tanh(self.image_proj(features)))  # (B_img, N, C) -> (B_img, N, D)

    def image_projections(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Every level's ``image_projection`` of V, once per image: L x (B_img, N, k). Three
        products rather than one fused (B_img*N, D) x (D, L*k): on a 2-core CPU, forward +
        backward for V of (128, 196, 512) in bf16 took 400 ms fused (plus the copy that lays the
        result out per level) against 315 ms for the three."""
        return [c.image_projection(v) for c in self.coattention]

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor,
                image: torch.Tensor | None = None, features: torch.Tensor | None = None,
                image_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``logits`` (B, A), ``image_attention`` (B, L, N), ``question_attention`` (B, L, T).

        ``image_index`` (B,) picks each question's image when ``image`` / ``features`` hold every
        image of the batch once: image-side work runs per image, the rest per question."""
        v = self.regions(image, features)  # (B_img, N, D)
        v_proj = self.image_projections(v)  # L x (B_img, N, k)
        if image_index is not None:  # gathered per question: B_img -> B
            v, v_proj = v[image_index], [p[image_index] for p in v_proj]
        levels, a_v, a_q = [], [], []
        words = self.question_encoder(question, question_mask)  # 3 x (B, T, D)
        for q, coatt, proj in zip(words, self.coattention, v_proj, strict=True):
            v_hat, q_hat, av, aq = coatt(v, q, question_mask, proj)
            levels.append((v_hat, q_hat))
            a_v.append(av)
            a_q.append(aq)
        return {"logits": self.head(levels), "image_attention": torch.stack(a_v, 1),
                "question_attention": torch.stack(a_q, 1)}
