"""Vocabularies: the question words (index 0 padding, 1 unknown) and the answers.

Both travel inside the input pipeline (``vqa.data.pipeline``) that every checkpoint carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from vqa.data.answers import normalize_answer

PAD, UNK = "<pad>", "<unk>"


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


def word_vocabulary(questions: Iterable[Sequence[str]], min_word_count: int = 1) -> Vocabulary:
    """Words seen at least ``min_word_count`` times, sorted, after padding and unknown."""
    words = Counter(w for q in questions for w in q)
    return Vocabulary([PAD, UNK, *sorted(w for w, c in words.items() if c >= min_word_count)], UNK)


def answer_vocabulary(answers: Iterable[str], num_answers: int = 1000,
                      normalize: Callable[[str], str] = normalize_answer) -> Vocabulary:
    """The ``num_answers`` most common answers, normalised as the benchmark compares them (ties
    broken alphabetically, so the result is deterministic)."""
    counts = Counter(normalize(a) for a in answers)
    counts.pop("", None)
    return Vocabulary([a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                       [:num_answers]])
