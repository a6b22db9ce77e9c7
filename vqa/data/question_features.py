"""Token features of a frozen text encoder, computed once per distinct question and cached.

A frozen encoder gives the same features for the same tokens in every epoch, so they are computed
once (questions with identical token ids share a row: the shapes data has a few hundred distinct
questions among 20,000) and stored under a key of the encoder (source, weight-file hashes, layers),
the pipeline and the questions files (``vqa.data.preprocess.cached``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from vqa.data.preprocess import Preprocessed

# (ids (B, T), mask (B, T)) -> (B, T, L, H) features of the selected hidden layers
Encode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class QuestionFeatures:
    """``features`` (M, L, H) float16 token rows; distinct question ``u`` owns rows
    ``offsets[u]:offsets[u + 1]``; question ``i`` of the split is distinct question ``rows[i]``."""

    def __init__(self, features: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> None:
        self.features, self.offsets, self.rows = features, offsets, rows

    def padded(self, i: int, length: int) -> torch.Tensor:
        """Question ``i``'s features zero-padded to ``length`` tokens: (T, L, H) float16."""
        u = self.rows[i]
        x = torch.from_numpy(self.features[self.offsets[u]:self.offsets[u + 1]])  # (T_i, L, H)
        out = x.new_zeros(length, *x.shape[1:])
        out[: len(x)] = x
        return out


@torch.no_grad()
def compute_question_features(data: Preprocessed, encode: Encode, batch_size: int = 256,
                              device: str | torch.device = "cpu") -> QuestionFeatures:
    """Run ``encode`` once per distinct question of a split (longest first, in batches)."""
    lengths = data.lengths.numpy()
    keys = [tuple(row[:n]) for row, n in zip(data.questions.numpy().tolist(), lengths, strict=True)]
    distinct: dict[tuple[int, ...], int] = {}
    rows = np.fromiter((distinct.setdefault(k, len(distinct)) for k in keys), np.int64, len(keys))
    first = np.zeros(len(distinct), np.int64)
    first[rows[::-1]] = np.arange(len(rows))[::-1]  # a question of each distinct row
    n_tokens = lengths[first]
    offsets = np.concatenate([[0], np.cumsum(n_tokens)])
    features: np.ndarray | None = None
    order = np.argsort(-n_tokens, kind="stable")  # similar lengths batch together
    for start in tqdm(range(0, len(order), batch_size), desc="question features", unit="batch"):
        us = order[start:start + batch_size]
        t = max(int(n_tokens[us].max()), 1)
        ids = data.questions[first[us], :t].to(device)  # (B, T)
        mask = (torch.arange(t) < torch.from_numpy(n_tokens[us])[:, None]).to(device)  # (B, T)
        out = encode(ids, mask).to("cpu", torch.float16).numpy()  # (B, T, L, H)
        if features is None:
            features = np.zeros((int(offsets[-1]), *out.shape[2:]), np.float16)
        for b, u in enumerate(us):
            features[offsets[u]:offsets[u + 1]] = out[b, : n_tokens[u]]
    if features is None:  # no questions
        features = np.zeros((0, 0, 0), np.float16)
    return QuestionFeatures(features, offsets, rows)
