"""The hierarchical question encoder of Lu et al. 2016, Sec. 3.2: word, phrase and question level."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vqa.models.dropout import Dropout


class HierarchicalQuestionEncoder(nn.Module):
    """Word embeddings, n-gram phrase features and an LSTM over them.

    Word level: ``q^w_t`` is the learned embedding, as the paper states (Sec. 3.2); the Torch
    reference code adds a tanh, which on the shapes data slows learning markedly, so it is left out.
    Phrase level (Eq. 1-2): ``q^p_t = max_s tanh(W_c^s q^w_{t:t+s-1})`` for unigram, bigram and
    trigram windows starting at ``t`` (zero-padded at the end). Question level: ``q^s_t =
    LSTM(q^p_t)``. Padding is right-aligned, so the LSTM's outputs at real words never see it.

    Args:
        vocab_size: question vocabulary size; index 0 is padding.
        dim: feature size ``d`` of all three levels.
        dropout: applied to the word embeddings and each level's output.
        lstm_layers: LSTM depth (the paper's reference code uses 2).
    """

    def __init__(self, vocab_size: int, dim: int = 512, dropout: float = 0.5,
                 lstm_layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.ngrams = nn.ModuleList(nn.Conv1d(dim, dim, s) for s in (1, 2, 3))
        self.lstm = nn.LSTM(dim, dim, lstm_layers, batch_first=True,
                            dropout=dropout if lstm_layers > 1 else 0.0)
        self.drop = Dropout(dropout)

    def forward(self, question: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) ids and (B, T) mask -> word, phrase, question features, each (B, T, D)."""
        word = self.embed(question) * mask.unsqueeze(-1)  # (B, T, D)
        x = self.drop(word).transpose(1, 2)  # (B, D, T)
        grams = [torch.tanh(conv(F.pad(x, (0, conv.kernel_size[0] - 1)))) for conv in self.ngrams]
        phrase = torch.stack(grams).amax(0).transpose(1, 2)  # 3 x (B, D, T) -> (B, T, D), Eq. 2
        phrase = phrase * mask.unsqueeze(-1)
        sentence, _ = self.lstm(self.drop(phrase))  # (B, T, D)
        return self.drop(word), self.drop(phrase), self.drop(sentence)
