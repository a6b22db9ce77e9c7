"""Examples + vocabularies -> model inputs and training targets, cached on disk.

Building a VQA v2 train split (443k questions, 4.4M answers) took 25-27 s including the cache
write (``scripts/bench_preprocess.py``, 2 CPU cores); the result is written once to ``cache_dir``
under a key of everything it depends on (input files' paths, sizes and modification times, the
vocabularies, the settings) and read back in 1.6 s.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from vqa._io import atomic_open, gc_paused
from vqa.data.answers import EvalVersion, answer_scores, clean, normalize_answer
from vqa.data.formats import ANSWER_TYPES, Example
from vqa.data.pipeline import InputPipeline
from vqa.data.vocab import Vocabulary

CACHE_FORMAT = "vqa-preprocessed/3"
T = TypeVar("T")


@dataclass
class Preprocessed:
    """One split as arrays, row ``i`` for ``examples[i]``.

    questions: (N, T) token ids, right-padded to ``lengths`` (N,); ``words``: (N, T) the word of
    each token (``vqa.data.tokenizers.Encoded``). targets: CSR soft scores, the vocabulary answers of
    row ``i`` at ``target_index[target_offsets[i]:target_offsets[i + 1]]`` with their official
    accuracy in ``target_score``. answer_index: (N,) most common answer or -100.
    answer_type: (N,) index into ``ANSWER_TYPES`` or -1. choices: (N, K) vocabulary index of
    each multiple-choice candidate, -1 when not in the vocabulary (``None``: open-ended).
    """

    examples: list[Example]
    questions: torch.Tensor
    lengths: torch.Tensor
    words: np.ndarray
    target_offsets: np.ndarray
    target_index: np.ndarray
    target_score: np.ndarray
    answer_index: torch.Tensor
    answer_type: torch.Tensor
    choices: torch.Tensor | None = None

    def target(self, i: int, num_answers: int) -> torch.Tensor:
        """(A,) soft scores of row ``i``."""
        lo, hi = self.target_offsets[i], self.target_offsets[i + 1]
        out = torch.zeros(num_answers)
        out[torch.from_numpy(self.target_index[lo:hi].astype(np.int64))] = torch.from_numpy(
            self.target_score[lo:hi])
        return out


def soft_targets(examples: Sequence[Example], answers: Vocabulary,
                 version: EvalVersion = "current") -> list[tuple[list[int], list[float]]]:
    """Per example, the vocabulary answers with a non-zero official accuracy and that accuracy.

    A vocabulary answer ``a`` is scored as the evaluation scores the prediction ``a``: the target
    at the predicted index is the official per-question accuracy.
    """
    by_clean: dict[str, list[int]] = {}
    by_norm: dict[str, list[int]] = {}
    for i, a in enumerate(answers.tokens):
        by_clean.setdefault(clean(a), []).append(i)
        by_norm.setdefault(normalize_answer(a), []).append(i)
    out = []
    for ex in examples:
        scores, normalise = answer_scores(ex.answers, version) if ex.answers else ({}, False)
        index = by_norm if normalise else by_clean
        pairs = [(i, s) for a, s in scores.items() for i in index.get(a, ())]
        out.append(([i for i, _ in pairs], [s for _, s in pairs]))
    return out


def preprocess(examples: Sequence[Example], pipeline: InputPipeline,
               version: EvalVersion = "current") -> Preprocessed:
    """Tokens, soft targets, answer and type indices (and multiple-choice candidates)."""
    with gc_paused():
        examples = list(examples)
        n = len(examples)
        encoded = pipeline.encode([ex.question for ex in examples])  # (N, T)
        targets = soft_targets(examples, pipeline.answers, version)
        lengths = np.fromiter((len(ix) for ix, _ in targets), np.int64, n)
        answers = pipeline.answers.index
        choices = None
        if any(ex.multiple_choices for ex in examples):
            k = max(len(ex.multiple_choices) for ex in examples)
            choices = torch.full((n, k), -1, dtype=torch.long)  # (N, K)
            for i, ex in enumerate(examples):
                choices[i, :len(ex.multiple_choices)] = torch.tensor(
                    [answers.get(normalize_answer(c), -1) for c in ex.multiple_choices])
        return Preprocessed(
            examples, torch.from_numpy(encoded.ids), torch.from_numpy(encoded.lengths),
            encoded.words,
            np.concatenate([[0], np.cumsum(lengths)]),
            np.fromiter((i for ix, _ in targets for i in ix), np.int32, int(lengths.sum())),
            np.fromiter((s for _, sc in targets for s in sc), np.float32, int(lengths.sum())),
            torch.tensor([answers.get(normalize_answer(ex.multiple_choice_answer), -100)
                          if ex.multiple_choice_answer is not None else -100 for ex in examples]),
            torch.tensor([ANSWER_TYPES.index(ex.answer_type) if ex.answer_type in ANSWER_TYPES
                          else -1 for ex in examples]),
            choices)


def cached(cache_dir: str | os.PathLike | None, name: str, key: Any, build: Callable[[], T]) -> T:
    """``build()``, or its result from ``cache_dir`` when an earlier run stored it under ``key``.

    The file is ``{name}-{hash of key}.pkl``, written atomically; ``None`` disables caching.
    """
    if cache_dir is None:
        return build()
    digest = hashlib.sha256(repr([CACHE_FORMAT, key]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{name}-{digest}.pkl"
    if path.is_file():
        with open(path, "rb") as f, gc_paused():
            return pickle.load(f)
    value = build()
    with atomic_open(path, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    return value
