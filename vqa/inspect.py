"""Ask a trained model about an image and look at its attention: used by ``vqa attend`` and the
notebook ``notebooks/inspect_attention.ipynb``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vqa.data.dataset import load_image, normalize_image
from vqa.data.vocab import tokenize
from vqa.training.module import VQAModule
from vqa.viz import LEVELS, figure


@dataclass
class Answer:
    """A model's answer with what it looked at.

    ``image``: (S, S, 3) uint8 as the model saw it; ``image_attention``: (L, N) over the grid
    ``grid`` (row-major); ``question_attention``: (L, T) over ``tokens``; ``top``: the most
    probable answers with their probabilities.
    """

    question: str
    tokens: list[str]
    top: list[tuple[str, float]]
    image: np.ndarray
    image_attention: np.ndarray
    question_attention: np.ndarray
    grid: tuple[int, int]

    @property
    def answer(self) -> str:
        return self.top[0][0]

    def figure(self, title: str | None = None):
        """Image attention of each level over the image, word attention below (matplotlib)."""
        title = title or f"Q: {self.question}\nA: {self.answer} ({self.top[0][1]:.2f})"
        return figure(self.image, self.image_attention, self.question_attention, self.tokens,
                      self.grid, title, LEVELS[: len(self.image_attention)])


class Inspector:
    """A checkpoint ready to answer free-text questions about image files.

    Args:
        module: a trained ``VQAModule`` holding its vocabularies (every checkpoint does).
        max_question_length: questions are cut to this many tokens.
    """

    def __init__(self, module: VQAModule, max_question_length: int = 26) -> None:
        if module.vocab is None:
            raise ValueError("the module has no vocabularies; load it from a checkpoint")
        encoder = getattr(module.model, "image_encoder", None)
        if encoder is None:
            raise ValueError("this model reads cached features, not images: ask a model trained "
                             "with an image encoder, or add -c configs/paper/raw_images.yaml")
        self.module, self.vocab = module.eval(), module.vocab
        self.image_size, self.grid = encoder.image_size, tuple(encoder.grid_size)
        self.max_question_length = max_question_length

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> Inspector:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: checkpoint not found")
        return cls(VQAModule.load_from_checkpoint(path, map_location="cpu", weights_only=False),
                   **kwargs)

    @torch.no_grad()
    def ask(self, image: str | os.PathLike | Image.Image, question: str, k: int = 5) -> Answer:
        """Answer ``question`` about ``image`` (a file or a PIL image)."""
        raw = load_image(image, self.image_size)  # (3, S, S) uint8
        tokens = tokenize(question)[: self.max_question_length]
        if not tokens:
            raise ValueError(f"the question {question!r} has no words")
        ids = torch.tensor([self.vocab.questions.encode(tokens)])  # (1, T)
        out = self.module({"image": normalize_image(raw)[None], "question": ids,
                           "question_mask": ids != 0})
        probs = out["logits"][0].softmax(-1)  # (A,)
        p, idx = probs.topk(min(k, len(probs)))
        answers = self.vocab.answers.tokens
        return Answer(question, tokens, [(answers[i], float(q)) for q, i in zip(p, idx, strict=True)],
                      raw.permute(1, 2, 0).numpy(), out["image_attention"][0].numpy(),
                      out["question_attention"][0].numpy(), self.grid)
