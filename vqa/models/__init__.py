"""Plain ``nn.Module`` parts of the VQA models; no Lightning in here.

A model (``VQAModel``) is composed from an image encoder, a question encoder, an attention
mechanism (``vqa.models.attention.Attention``) and an answer head; ``HieCoAtt`` is the paper's
composition.
"""

from vqa.models.attention import Attended, Attention, MapNames
from vqa.models.ban import BilinearAttention
from vqa.models.baseline import NoAttention
from vqa.models.butd import TopDownAttention
from vqa.models.coattention import (
    AlternatingCoAttention,
    CoAttention,
    GuidedAttention,
    ParallelCoAttention,
)
from vqa.models.head import RecursiveAnswerHead
from vqa.models.hiecoatt import LEVELS, HieCoAtt, HierarchicalCoAttention
from vqa.models.image import BoxEncoder, SmallCNN, TorchvisionEncoder
from vqa.models.mcan import ModularCoAttention
from vqa.models.model import VQAModel
from vqa.models.question import (
    HierarchicalQuestionEncoder,
    LSTMQuestionEncoder,
    QuestionEncoder,
    TextInputs,
    TransformerQuestionEncoder,
)
from vqa.models.san import StackedAttention

__all__ = [
    "LEVELS", "AlternatingCoAttention", "Attended", "Attention", "BilinearAttention", "BoxEncoder",
    "CoAttention",
    "GuidedAttention", "HieCoAtt", "HierarchicalCoAttention", "HierarchicalQuestionEncoder",
    "LSTMQuestionEncoder", "MapNames", "ModularCoAttention", "NoAttention", "ParallelCoAttention",
    "QuestionEncoder", "RecursiveAnswerHead", "SmallCNN", "StackedAttention", "TextInputs",
    "TopDownAttention", "TorchvisionEncoder", "TransformerQuestionEncoder", "VQAModel",
]
