"""Question encoders: token ids (B, T) and mask (B, T) -> word, phrase and question level (B, T, D).

Every encoder is built as ``factory(inputs, dim, dropout)`` from ``TextInputs`` (what the data's
input pipeline says about the tokens) and returns the three levels Lu et al. 2016 co-attend at:

* ``HierarchicalQuestionEncoder``: the paper's (Sec. 3.2): embeddings, n-gram convolutions, LSTM;
* ``LSTMQuestionEncoder``: a plain LSTM baseline, the same features at every level;
* ``TransformerQuestionEncoder``: a pretrained ``transformers.AutoModel``, levels from its hidden
  layers, frozen (its features then computed once per distinct question), partly or fully
  fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vqa._io import resolve_pretrained
from vqa.models.dropout import Dropout

QuestionLevels = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TextInputs:
    """What a question encoder is built for: ``vocab_size`` token ids (0 is padding for the
    word vocabulary), and the pretrained model whose tokenizer made them (``None``: our words)."""

    vocab_size: int
    pretrained: str | None = None


class QuestionEncoder(nn.Module):
    """Interface: ``forward(question (B, T), mask (B, T))`` -> word, phrase and question features,
    each (B, T, D)."""

    def forward(self, question: torch.Tensor, mask: torch.Tensor) -> QuestionLevels:
        raise NotImplementedError


class HierarchicalQuestionEncoder(QuestionEncoder):
    """Word embeddings, n-gram phrase features and an LSTM over them.

    Word level: ``q^w_t`` is the learned embedding, as the paper states (Sec. 3.2); the Torch
    reference code adds a tanh, which on the shapes data slows learning markedly, so it is left out.
    Phrase level (Eq. 1-2): ``q^p_t = max_s tanh(W_c^s q^w_{t:t+s-1})`` for unigram, bigram and
    trigram windows starting at ``t`` (zero-padded at the end). Question level: ``q^s_t =
    LSTM(q^p_t)``. Padding is right-aligned, so the LSTM's outputs at real words never see it.

    Args:
        inputs: the token ids' vocabulary size (index 0 is padding).
        dim: feature size ``d`` of all three levels.
        dropout: applied to the word embeddings and each level's output.
        lstm_layers: LSTM depth (the paper's reference code uses 2).
    """

    def __init__(self, inputs: TextInputs, dim: int = 512, dropout: float = 0.5,
                 lstm_layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(inputs.vocab_size, dim, padding_idx=0)
        self.ngrams = nn.ModuleList(nn.Conv1d(dim, dim, s) for s in (1, 2, 3))
        self.lstm = nn.LSTM(dim, dim, lstm_layers, batch_first=True,
                            dropout=dropout if lstm_layers > 1 else 0.0)
        self.drop = Dropout(dropout)

    def forward(self, question: torch.Tensor, mask: torch.Tensor) -> QuestionLevels:
        word = self.embed(question) * mask.unsqueeze(-1)  # (B, T, D)
        x = self.drop(word).transpose(1, 2)  # (B, D, T)
        grams = [torch.tanh(conv(F.pad(x, (0, conv.kernel_size[0] - 1)))) for conv in self.ngrams]
        phrase = torch.stack(grams).amax(0).transpose(1, 2)  # 3 x (B, D, T) -> (B, T, D), Eq. 2
        phrase = phrase * mask.unsqueeze(-1)
        sentence, _ = self.lstm(self.drop(phrase))  # (B, T, D)
        return self.drop(word), self.drop(phrase), self.drop(sentence)


class LSTMQuestionEncoder(QuestionEncoder):
    """Baseline without the hierarchy: word embeddings and an LSTM, whose outputs serve as all three
    levels (the co-attention modules stay separate).

    Args:
        inputs, dim, dropout, lstm_layers: as for ``HierarchicalQuestionEncoder``.
    """

    def __init__(self, inputs: TextInputs, dim: int = 512, dropout: float = 0.5,
                 lstm_layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(inputs.vocab_size, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, dim, lstm_layers, batch_first=True,
                            dropout=dropout if lstm_layers > 1 else 0.0)
        self.drop = Dropout(dropout)

    def forward(self, question: torch.Tensor, mask: torch.Tensor) -> QuestionLevels:
        h, _ = self.lstm(self.drop(self.embed(question)))  # (B, T, D)
        h = self.drop(h * mask.unsqueeze(-1))
        return h, h, h


class TransformerQuestionEncoder(QuestionEncoder):
    """A pretrained transformer (``AutoModel``) over the pipeline tokenizer's ids.

    Level ``l`` is ``tanh(W_l h^{(layers[l])})``: hidden layer ``layers[l]`` (0 is the embedding
    output) projected to ``d``, masked and dropped out. The transformer sees its own attention mask
    (the question's real tokens, special tokens included).

    Args:
        inputs: names the pretrained model (the data's ``tokenizer``, linked by the CLI).
        dim, dropout: feature size ``d``; dropout on each level.
        layers: the hidden layers of the word, phrase and question level (default: embeddings,
            the middle layer, the last layer).
        train_layers: ``0`` frozen (its features are computed once per distinct question and
            kept in memory: ``memoised``), ``n`` the last n layers fine-tuned, ``all``
            everything fine-tuned.
    """

    def __init__(self, inputs: TextInputs, dim: int = 512, dropout: float = 0.5,
                 layers: tuple[int, int, int] | None = None,
                 train_layers: int | Literal["all"] = 0) -> None:
        super().__init__()
        from transformers import AutoModel

        if inputs.pretrained is None:
            raise ValueError("TransformerQuestionEncoder needs a pretrained tokenizer: set "
                             "data.tokenizer to the model's name or folder")
        self.source = inputs.pretrained
        self.path = resolve_pretrained(inputs.pretrained)
        self.transformer = AutoModel.from_pretrained(self.path, dtype=torch.float32)
        n = self.transformer.config.num_hidden_layers
        self.layers = tuple(layers) if layers is not None else (0, n // 2, n)
        if len(self.layers) != 3 or not all(0 <= i <= n for i in self.layers):
            raise ValueError(f"layers must be 3 hidden layers in 0..{n}, got {self.layers}")
        self.frozen = train_layers == 0
        self._memo: dict[tuple[int, ...], torch.Tensor] = {}  # frozen: features per question
        self.trained = self._trained_modules(train_layers, n)
        self.transformer.requires_grad_(False)
        for m in self.trained:
            m.requires_grad_(True)
        hidden = self.transformer.config.hidden_size
        self.proj = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(3))
        self.drop = Dropout(dropout)
        self.train(False)

    def _trained_modules(self, train_layers: int | str, n: int) -> list[nn.Module]:
        if train_layers == "all":
            return [self.transformer]
        if not isinstance(train_layers, int) or not 0 <= train_layers <= n:
            raise ValueError(f"train_layers must be 'all' or 0..{n}, got {train_layers!r}")
        blocks = next((m for m in self.transformer.modules()
                       if isinstance(m, nn.ModuleList) and len(m) == n), None)
        if blocks is None:
            raise ValueError(f"{self.source}: cannot find its {n} transformer layers")
        return list(blocks)[n - train_layers:]

    def train(self, mode: bool = True) -> TransformerQuestionEncoder:
        super().train(mode)
        self.transformer.eval()  # frozen parts keep their pretrained behaviour (no dropout)
        for m in self.trained:
            m.train(mode)
        return self

    def hidden(self, question: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The selected hidden layers: (B, T) ids -> (B, T, 3, H)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.transformer(input_ids=question, attention_mask=mask.long(),
                                   output_hidden_states=True)
        return torch.stack([out.hidden_states[i] for i in self.layers], 2)  # (B, T, 3, H)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._memo.clear()  # features of the weights being replaced
        super()._load_from_state_dict(*args, **kwargs)

    @torch.compiler.disable
    @torch.no_grad()
    def memoised(self, question: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` of the frozen transformer, run once per distinct question: its features are
        the same in every epoch, so each question's (T_i, 3, H) rows are kept (float16, on the
        CPU) the first time they are computed and later batches gather them (on shapes, a few
        hundred distinct questions cover 20,000)."""
        lengths = mask.sum(1).tolist()
        keys = [tuple(row[:n]) for row, n in zip(question.tolist(), lengths, strict=True)]
        new = {k: i for i, k in enumerate(keys) if k not in self._memo}
        if new:
            rows = list(new.values())
            t = max(max(lengths[i] for i in rows), 1)
            out = self.hidden(question[rows, :t], mask[rows, :t]).to("cpu", torch.float16)
            for j, (k, i) in enumerate(new.items()):
                self._memo[k] = out[j, :lengths[i]].clone()  # (T_i, 3, H), not a view of out
        width = next(iter(self._memo.values())).shape[1:]  # (3, H)
        features = torch.zeros(*question.shape, *width, dtype=torch.float16)  # (B, T, 3, H)
        for b, k in enumerate(keys):
            features[b, :lengths[b]] = self._memo[k]
        return features.to(question.device, non_blocking=True)

    def forward(self, question: torch.Tensor, mask: torch.Tensor) -> QuestionLevels:
        features = self.memoised(question, mask) if self.frozen else self.hidden(question, mask)
        features, real = features.to(self.proj[0].weight.dtype), mask.unsqueeze(-1)
        return tuple(self.drop(torch.tanh(p(features[:, :, i]))) * real  # (B, T, H) -> (B, T, D)
                     for i, p in enumerate(self.proj))
