"""``VQAModel``: a VQA model composed from parts: image encoder -> region projection, question
encoder, attention mechanism (``vqa.models.attention``), answer head.

Image-side work (the encoder, the projection, the mechanism's ``precompute``) runs once per image
of the batch; ``image_index`` then gathers it per question.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vqa.models.attention import Attention
from vqa.models.dropout import Dropout
from vqa.models.image import BoxEncoder
from vqa.models.question import HierarchicalQuestionEncoder, TextInputs

HeadFactory = Callable[[int, int, float], nn.Module]  # (in_dim, num_answers, dropout) -> head


def _compute_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """The dtype a product runs in here: autocast's when it is on, else ``default``. Cached
    float16 features are converted once, on the device, straight to it."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return default


GEOMETRY = 5  # x1, y1, x2, y2, area


def box_geometry(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes ``(x1, y1, x2, y2)`` over the image size (..., 4) -> (..., 5), their area appended."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return torch.cat([boxes, area.unsqueeze(-1)], -1)


class VQAModel(nn.Module):
    """Regions ``V = dropout(tanh(W_I F))`` (B_img, N, D) from the image encoder's features F, or
    from cached features; the question's levels from the question encoder; the mechanism attends;
    the head answers.

    Args:
        vocab_size: question vocabulary size (linked from the data's input pipeline).
        num_answers: answer vocabulary size (linked from the pipeline).
        attention: builds the mechanism from ``(dim, dropout)`` (``class_path`` and its own
            ``init_args`` in YAML).
        image_encoder: module mapping images (B, 3, H, W) to regions (B, N, C), with an
            ``out_dim`` attribute and a ``grid(image_size)`` method; ``None`` when the data serves
            cached features.
        question_encoder: builds the question encoder from ``(TextInputs, dim, dropout)``
            (``vqa.models.question``).
        head: builds the answer head from ``(attention.out_dim, num_answers, dropout)``; ``None``:
            the head of the mechanism's paper (``Attention.answer_head``).
        image_dim: region feature size C of cached features (linked from the pipeline).
        text_model: the pretrained model the pipeline's tokenizer belongs to (linked; ``None``
            for the word vocabulary).
        dim: feature size ``d`` of regions and words.
        dropout: dropout throughout.
        box_geometry: region features carry their box's normalised ``(x1, y1, x2, y2, area)``
            into the projection ``W_I`` (as OpenVQA's box features do; bottom-up-attention-vqa
            loads its ``spatial_features`` and leaves them unused); needs boxes.
        blind: zero the image features (a question-only ablation that keeps the architecture).
    """

    def __init__(
        self,
        vocab_size: int,
        num_answers: int,
        attention: Callable[[int, float], Attention],
        image_encoder: nn.Module | None = None,
        question_encoder: Callable[[TextInputs, int, float], nn.Module] = HierarchicalQuestionEncoder,
        head: HeadFactory | None = None,
        image_dim: int | None = None,
        text_model: str | None = None,
        dim: int = 512,
        dropout: float = 0.5,
        box_geometry: bool = False,
        blind: bool = False,
    ) -> None:
        super().__init__()
        if image_encoder is None and image_dim is None:
            raise ValueError("give an image_encoder, or image_dim for cached features")
        # Registration order is the optimiser's parameter order: checkpoints depend on it.
        self.image_encoder = image_encoder
        in_dim = image_encoder.out_dim if image_encoder is not None else image_dim
        self.image_proj = nn.Linear(in_dim + (GEOMETRY if box_geometry else 0), dim)
        self.question_encoder = question_encoder(TextInputs(vocab_size, text_model), dim, dropout)
        self.attention = attention(dim, dropout)
        self.head = (head(self.attention.out_dim, num_answers, dropout) if head is not None
                     else self.attention.answer_head(num_answers, dropout))
        self.drop = Dropout(dropout)
        self.blind, self.box_geometry = blind, box_geometry

    @property
    def maps(self):  # -> MapNames
        """The names of the attention maps in the output (``image_attention`` rows are
        ``maps.regions``, ``question_attention`` rows ``maps.words``)."""
        return self.attention.maps

    def regions(self, image: torch.Tensor | None, features: torch.Tensor | None,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Projected region features V (B_img, N, D), once per image: linear + tanh, then
        dropout (where the HieCoAtt reference code has it: on the d-wide output, not the raw
        features). The questions of an image share V, and so its dropout mask, which is what lets
        every product with V run once per image."""
        if image is not None and boxes is not None and not isinstance(self.image_encoder, BoxEncoder):
            raise ValueError("the data gives candidate boxes (a split's 'boxes') but the image "
                             "encoder makes a grid: pool the boxes with a BoxEncoder (e.g. -c "
                             "configs/shapes/boxes.yaml), or leave the boxes out")
        if features is None and isinstance(self.image_encoder, BoxEncoder):
            if boxes is None:
                raise ValueError("a BoxEncoder pools boxes: give the splits a boxes file "
                                 "(data.train.boxes, data.val.boxes)")
            features = self.image_encoder(image, boxes)  # (B_img, K, C)
        elif features is None:
            features = self.image_encoder(image)  # (B_img, N, C)
        features = features.to(_compute_dtype(features.device.type, self.image_proj.weight.dtype))
        if self.box_geometry:
            if boxes is None:
                raise ValueError("box_geometry needs region features with boxes (a region cache)")
            features = torch.cat([features, box_geometry(boxes).to(features.dtype)], -1)
        if self.blind:  # geometry included: a blind model learns nothing of where boxes are
            features = torch.zeros_like(features)
        return self.drop(torch.tanh(self.image_proj(features)))  # (B_img, N, C) -> (B_img, N, D)

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor,
                image: torch.Tensor | None = None, features: torch.Tensor | None = None,
                image_index: torch.Tensor | None = None,
                region_mask: torch.Tensor | None = None,
                boxes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``logits`` (B, A), ``image_attention`` (B, M_v, N) and ``question_attention``
        (B, M_q, T), their rows named by ``maps``, the mechanism's ``extra`` maps, and in
        training a head's auxiliary answers, ``level_logits`` (B, L, A), where it gives them.

        ``image_index`` (B,) picks each question's image when ``image`` / ``features`` hold every
        image of the batch once; ``region_mask`` (B_img, N) marks real regions (``None``: all)
        and ``boxes`` (B_img, N, 4) are region features' boxes over the image size."""
        v = self.regions(image, features, boxes)  # (B_img, N, D)
        pre = self.attention.precompute(v, region_mask)  # each (B_img, ...)
        if image_index is not None:  # gathered per question: B_img -> B
            # index_select, not v[image_index]: its backward (index_add_) is 5x faster on the CPU
            # than advanced indexing's (index_put_ with accumulate) at (64, 196, 512)
            v = v.index_select(0, image_index)
            pre = tuple(p.index_select(0, image_index) for p in pre)
            region_mask = region_mask[image_index] if region_mask is not None else None
        q = self.question_encoder(question, question_mask)  # levels, each (B, T, D)
        out = self.attention(v, region_mask, q, question_mask, pre)
        logits = self.head(out.fused)
        aux = {}
        if isinstance(logits, tuple):  # a head's auxiliary answers (training only)
            logits, aux["level_logits"] = logits  # (B, A), (B, L, A)
        return {"logits": logits, "image_attention": out.regions,
                "question_attention": out.words, **(out.extra or {}), **aux}
