"""Question tokenisation and the question / answer vocabularies.

Vocabularies are saved next to the run (``vocab.json``) and inside every checkpoint (key
``vqa_vocab``), so evaluating a checkpoint never rebuilds them differently.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vqa._io import read_json, write_json
from vqa.data.answers import normalize_answer

PAD, UNK = "<pad>", "<unk>"
FORMAT = "vqa-vocab/1"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(question: str) -> list[str]:
    """Lower case, split words from punctuation, drop question marks (as common VQA preprocessing
    does: "What's on the table?" -> ["what's", "on", "the", "table"])."""
    return [t for t in _TOKEN.findall(question.lower()) if t != "?"]


class Vocabulary:
    """An ordered list of tokens with a reverse index; ``unknown`` names the fallback token."""

    def __init__(self, tokens: Sequence[str], unknown: str | None = None) -> None:
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.unknown = unknown
        self.unknown_index = self.index[unknown] if unknown is not None else None

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def get(self, token: str) -> int | None:
        """Index of ``token``, the unknown index, or ``None`` without an unknown token."""
        return self.index.get(token, self.unknown_index)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, self.unknown_index) for t in tokens]  # type: ignore[misc]


@dataclass
class VocabBundle:
    """The question vocabulary (index 0 padding, 1 unknown) and the answer vocabulary."""

    questions: Vocabulary
    answers: Vocabulary

    @classmethod
    def build(cls, questions: Iterable[Sequence[str]], answers: Iterable[str],
              min_word_count: int = 1, num_answers: int = 1000) -> VocabBundle:
        """Words seen at least ``min_word_count`` times; the ``num_answers`` most common
        normalised answers (ties broken alphabetically, so the result is deterministic)."""
        words = Counter(w for q in questions for w in q)
        kept = sorted(w for w, c in words.items() if c >= min_word_count)
        counts = Counter(normalize_answer(a) for a in answers)
        counts.pop("", None)
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_answers]
        return cls(Vocabulary([PAD, UNK, *kept], UNK), Vocabulary([a for a, _ in top]))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "questions": self.questions.tokens,
                "answers": self.answers.tokens}

    @classmethod
    def from_dict(cls, d: Any, source: str) -> VocabBundle:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{source}: not a vocabulary file (expected format {FORMAT!r})")
        q = d["questions"]
        if q[:2] != [PAD, UNK]:
            raise ValueError(f"{source}: question vocabulary must start with {PAD!r}, {UNK!r}")
        return cls(Vocabulary(q, UNK), Vocabulary(d["answers"]))

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> VocabBundle:
        """From ``vocab.json`` or from a checkpoint (``.ckpt``) that holds one."""
        if str(path).endswith(".ckpt"):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: checkpoint not found")
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            if "vqa_vocab" not in ckpt:
                raise ValueError(f"{path}: checkpoint holds no vocabulary ('vqa_vocab')")
            return cls.from_dict(ckpt["vqa_vocab"], str(path))
        return cls.from_dict(read_json(path), str(path))
