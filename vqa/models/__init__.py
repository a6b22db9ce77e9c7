"""Plain ``nn.Module`` parts of the co-attention models; no Lightning in here."""

from vqa.models.coattention import (
    AlternatingCoAttention,
    CoAttention,
    GuidedAttention,
    ParallelCoAttention,
)
from vqa.models.head import RecursiveAnswerHead
from vqa.models.hiecoatt import LEVELS, HieCoAtt
from vqa.models.image import SmallCNN, TorchvisionEncoder
from vqa.models.question import (
    HierarchicalQuestionEncoder,
    LSTMQuestionEncoder,
    QuestionEncoder,
    TextInputs,
    TransformerQuestionEncoder,
)

__all__ = [
    "LEVELS", "AlternatingCoAttention", "CoAttention", "GuidedAttention", "HieCoAtt",
    "HierarchicalQuestionEncoder", "LSTMQuestionEncoder", "ParallelCoAttention", "QuestionEncoder",
    "RecursiveAnswerHead", "SmallCNN", "TextInputs", "TorchvisionEncoder",
    "TransformerQuestionEncoder",
]
