"""Question tokenizers: the paper's word vocabulary, or a pretrained (Hugging Face) tokenizer.

Both turn questions into right-padded ids with a length, and say which *word* each token belongs
to. Words are what people read and what grounding annotations point at: the words of ``tokenize``
(runs of letters and digits in any script with an optional ``'s``-like suffix, and each
punctuation mark but ``?``: ``"What's on the table?"`` -> ``what's``, ``on``, ``the``, ``table``),
whatever the tokenizer.
A subword token maps to the word its characters overlap; special tokens (``[CLS]``, ``[SEP]``),
question marks and padding map to -1.
"""

from __future__ import annotations

import base64
import bisect
import functools
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vqa._io import resolve_pretrained
from vqa.data.vocab import UNK, Vocabulary


@functools.cache
def _word_pattern() -> re.Pattern:
    """A run of letters, digits and combining marks in any script (with an optional 's-like
    suffix), or one other character that is not a space or a question mark. Python's ``re`` has
    no ``\\p{M}``: the marks' class is built once, on first use."""
    marks = "".join(re.escape(chr(c)) for c in range(0x300, 0x110000)
                    if unicodedata.category(chr(c)).startswith("M"))
    letter = rf"[^\W_]|[{marks}]"
    return re.compile(rf"(?:{letter})+(?:'(?:[^\W\d_]|[{marks}])+)?|[^\w\s?{marks}]|_")


def word_spans(question: str) -> list[tuple[str, int, int]]:
    """The question's words (NFC-normalised, lower case: "e" + combining acute is "é") with
    their character spans in ``question``."""
    return [(unicodedata.normalize("NFC", m.group()).lower(), m.start(), m.end())
            for m in _word_pattern().finditer(question)]


def tokenize(question: str) -> list[str]:
    """Lower case, split words from punctuation, drop question marks (as common VQA preprocessing
    does: "What's on the table?" -> ["what's", "on", "the", "table"])."""
    return [w for w, _, _ in word_spans(question)]


@dataclass
class Encoded:
    """A batch of questions: ``ids`` (N, T) right-padded, ``lengths`` (N,), ``words`` (N, T) the
    word index of each token (-1: special, punctuation or padding), ``full_lengths`` (N,) the
    token count before questions were cut at T (``full_lengths > lengths``: cut)."""

    ids: np.ndarray
    lengths: np.ndarray
    words: np.ndarray
    full_lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(N, T) bool, real tokens."""
        return np.arange(self.ids.shape[1])[None] < self.lengths[:, None]


class WordTokenizer:
    """The paper's tokenisation: regex words looked up in a vocabulary (0 padding, 1 unknown)."""

    kind = "words"
    source = None

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def unknown_id(self) -> int | None:
        return self.vocab.unknown_index

    def encode(self, questions: Sequence[str], max_length: int) -> Encoded:
        """Questions -> ``Encoded``; unknown words become ``<unk>``."""
        ids = np.zeros((len(questions), max_length), np.int64)
        lengths = np.zeros(len(questions), np.int64)
        full = np.zeros(len(questions), np.int64)
        for i, q in enumerate(questions):
            row = self.vocab.encode(tokenize(q))
            full[i] = len(row)
            row = row[:max_length]
            ids[i, :len(row)], lengths[i] = row, len(row)
        words = np.where(np.arange(max_length)[None] < lengths[:, None],
                         np.arange(max_length)[None], -1).astype(np.int16)
        return Encoded(ids, lengths, words, full)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": self.vocab.tokens}


class PretrainedTokenizer:
    """An ``AutoTokenizer`` (fast) from a hub name, a local folder or ``package:folder``.

    Its files, as loaded, travel with ``to_dict``: a checkpoint tokenizes exactly as in training.
    (Building a ``TransformerQuestionEncoder`` still loads the model by ``source``.)
    """

    kind = "pretrained"

    def __init__(self, source: str, files: dict[str, bytes] | None = None) -> None:
        from transformers import AutoTokenizer

        self.source = source
        with tempfile.TemporaryDirectory() as tmp:
            if files is None:
                AutoTokenizer.from_pretrained(resolve_pretrained(source)).save_pretrained(tmp)
            else:
                for name, data in files.items():
                    (Path(tmp) / name).write_bytes(data)
            # Read back before any use: calling a tokenizer changes what it saves (truncation).
            self.files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
            self.tokenizer = AutoTokenizer.from_pretrained(tmp)
        if not self.tokenizer.is_fast:
            raise ValueError(f"tokenizer {source!r}: a fast tokenizer is needed (for offsets)")

    def __len__(self) -> int:
        return len(self.tokenizer)

    @property
    def unknown_id(self) -> int | None:
        return self.tokenizer.unk_token_id

    def encode(self, questions: Sequence[str], max_length: int) -> Encoded:
        """Questions -> ``Encoded``, special tokens included, cut at ``max_length``."""
        enc = self.tokenizer(list(questions), truncation=True, max_length=max_length,
                             return_offsets_mapping=True)
        n = len(questions)
        ids = np.full((n, max_length), self.tokenizer.pad_token_id or 0, np.int64)
        words = np.full((n, max_length), -1, np.int16)
        lengths = np.zeros(n, np.int64)
        for i, (q, row, offsets) in enumerate(zip(questions, enc["input_ids"],
                                                  enc["offset_mapping"], strict=True)):
            ids[i, :len(row)], lengths[i] = row, len(row)
            spans = word_spans(q)
            starts = [s for _, s, _ in spans]
            for t, (a, b) in enumerate(offsets):
                # The last word starting before the token ends, if the token reaches into it
                # (some tokenizers' offsets include the space before a word).
                w = bisect.bisect_left(starts, b) - 1
                if b > a and w >= 0 and spans[w][2] > a:
                    words[i, t] = w
        return Encoded(ids, lengths, words, self._full_lengths(questions, lengths, max_length))

    def _full_lengths(self, questions: Sequence[str], lengths: np.ndarray,
                      max_length: int) -> np.ndarray:
        """Token counts before cutting: only questions that fill ``max_length`` can have been
        cut, so only those are tokenized again, whole (``verbose=False``: no notice about
        sequences longer than the model's; the cut is reported by the callers)."""
        full = lengths.copy()
        filled = np.flatnonzero(lengths >= max_length)
        if len(filled):
            enc = self.tokenizer([questions[i] for i in filled], verbose=False)
            full[filled] = [len(row) for row in enc["input_ids"]]
        return full

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source,
                "files": {k: base64.b64encode(v).decode() for k, v in self.files.items()}}


Tokenizer = WordTokenizer | PretrainedTokenizer


def tokenizer_from_dict(d: dict[str, Any], where: str) -> Tokenizer:
    """The tokenizer ``to_dict`` saved (``where`` names the file in errors)."""
    if d.get("kind") == "words":
        return WordTokenizer(Vocabulary(d["vocabulary"], UNK))
    if d.get("kind") == "pretrained":
        return PretrainedTokenizer(d["source"], {k: base64.b64decode(v)
                                                 for k, v in d["files"].items()})
    raise ValueError(f"{where}: unknown tokenizer kind {d.get('kind')!r}")
