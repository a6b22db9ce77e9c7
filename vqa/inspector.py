"""Ask a trained model about an image and look at its attention: used by ``vqa attend`` and the
notebook ``notebooks/inspect_attention.ipynb``. Everything about the inputs (tokenizer, question
length, image size, grid, answers) comes from the checkpoint's input pipeline."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vqa.data.pipeline import InputPipeline, upright_size
from vqa.models.attention import MapNames
from vqa.models.image import BoxEncoder
from vqa.training.module import VQAModule
from vqa.viz import Layout, figure, side_by_side


class UnknownWordsWarning(UserWarning):
    """No word of a question is in the model's vocabulary: the answer rests on the image."""


def unknown_words_message(question: str) -> str:
    """The warning for a question none of whose words the model knows."""
    return (f"no word of {question!r} is in the model's vocabulary: the answer rests on the "
            "image alone")


class CutQuestionWarning(UserWarning):
    """The question has more tokens than the model reads: the rest is ignored."""


def cut_question_message(tokens: int, read: int) -> str:
    """The warning for a question cut at the checkpoint's maximum question length."""
    return (f"the question has {tokens} tokens; the model read the first {read} (the "
            "checkpoint's max_question_length)")


@dataclass
class Answer:
    """A model's answer with what it looked at.

    ``image``: (H, W, 3) uint8 as the model saw it; ``image_attention``: (M_v, N) over the grid
    ``grid`` (row-major), or over boxes (``grid`` then holds them: (N, 4) corners over the image
    size); ``question_attention``: (M_q, W) over ``words`` (subword tokens
    merged); ``maps``: the names of their rows;
    ``top``: the most probable answers with their probabilities; ``known``: whether any word of
    the question is in the vocabulary; ``tokens``: the question's tokens, of which the model
    read the first ``read`` (the rest cut at the checkpoint's maximum question length).
    """

    question: str
    words: list[str]
    top: list[tuple[str, float]]
    image: np.ndarray
    image_attention: np.ndarray
    question_attention: np.ndarray
    grid: Layout
    maps: MapNames
    known: bool = True
    tokens: int = 0
    read: int = 0

    @property
    def answer(self) -> str:
        return self.top[0][0]

    def figure(self, title: str | None = None):
        """Each map over the image, its word attention below (matplotlib)."""
        return figure(self.image, self.image_attention, self.question_attention, self.words,
                      self.grid, self.maps, title or self.caption)

    @property
    def caption(self) -> str:
        return f"Q: {self.question}\nA: {self.answer} ({self.top[0][1]:.2f})"


class Inspector:
    """A checkpoint ready to answer free-text questions about image files.

    Args:
        module: a trained ``VQAModule`` holding its input pipeline (every checkpoint does).
    """

    def __init__(self, module: VQAModule) -> None:
        if module.pipeline is None:
            raise ValueError("the module has no input pipeline; load it from a checkpoint of "
                             "`vqa fit`")
        if getattr(module.model, "image_encoder", None) is None:
            raise ValueError("this model reads cached features, not images: ask a model trained "
                             "with an image encoder, or add -c configs/paper/raw_images.yaml")
        self.module, self.pipeline = module.eval(), module.pipeline

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> Inspector:
        InputPipeline.load(path)  # a clear error for files that are not our checkpoints
        return cls(VQAModule.load_from_checkpoint(path, map_location="cpu", weights_only=True))

    @property
    def needs_boxes(self) -> bool:
        """Whether the model pools region features over boxes (``BoxEncoder``)."""
        return isinstance(self.module.model.image_encoder, BoxEncoder)

    @torch.no_grad()
    def ask(self, image: str | os.PathLike | Image.Image, question: str, k: int = 5,
            boxes: np.ndarray | None = None) -> Answer:
        """Answer ``question`` about ``image`` (a file or a PIL image); a model over boxes also
        takes ``boxes`` (N, 4), corners in pixels of the image. A question without words is an
        error; one whose words are all unknown is answered with an ``UnknownWordsWarning``, one
        longer than the model reads with a ``CutQuestionWarning``."""
        if self.needs_boxes and boxes is None:
            raise ValueError("this model attends over boxes: give the image's boxes (vqa attend "
                             "--boxes BOXES.json)")
        q = self.pipeline.question(question)
        if not q.words:
            raise ValueError(f"the question {question!r} has no words")
        if not q.known:
            warnings.warn(unknown_words_message(question), UnknownWordsWarning, stacklevel=2)
        tokens, read = int(self.pipeline.encode([question]).full_lengths[0]), int(q.mask.sum())
        if tokens > read:
            warnings.warn(cut_question_message(tokens, read), CutQuestionWarning, stacklevel=2)
        raw = self.pipeline.image(image)  # (3, H, W) uint8
        layout: Layout = tuple(self.pipeline.grid or ())
        extra = {}
        if self.needs_boxes:
            w, h = (image.size if isinstance(image, Image.Image) else upright_size(image))
            layout = np.asarray(boxes, np.float32).reshape(-1, 4) / np.array([w, h, w, h], np.float32)
            extra = {"boxes": torch.from_numpy(layout)[None]}  # (1, N, 4)
        out = self.module.model(question=q.ids[None], question_mask=q.mask[None],
                                image=self.pipeline.normalize(raw)[None], **extra)
        probs = self.module.probabilities(out["logits"])[0]  # (A,), as the loss models them
        p, idx = probs.topk(min(k, len(probs)))
        answers = self.pipeline.answers.tokens
        return Answer(question, q.words, [(answers[i], float(v)) for v, i in zip(p, idx, strict=True)],
                      raw.permute(1, 2, 0).numpy(), out["image_attention"][0].float().numpy(),
                      q.merge(out["question_attention"][0]), layout,
                      self.module.model.maps, q.known, tokens, read)


def compare(inspectors: dict[str, Inspector], image: str | os.PathLike | Image.Image,
            question: str, boxes: np.ndarray | None = None):
    """Several checkpoints' region maps for one question, side by side (one row each, labelled
    with the checkpoint's name and answer), each over the image as that model saw it (models
    over boxes take ``boxes``, (N, 4) pixels)."""
    answers = {name: inspector.ask(image, question, boxes=boxes if inspector.needs_boxes else None)
               for name, inspector in inspectors.items()}
    return side_by_side([(f"{name}: {a.answer} ({a.top[0][1]:.2f})", a.image, a.image_attention,
                          a.grid, a.maps) for name, a in answers.items()], f"Q: {question}")
