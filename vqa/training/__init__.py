"""Lightning training: the module, the official-accuracy and grounding metrics and callbacks."""

from vqa.training.attention_table import AttentionTable
from vqa.training.grounding import GroundingScores
from vqa.training.human_attention import HumanAttention
from vqa.training.metrics import VQAAccuracy
from vqa.training.module import VQAModule
from vqa.training.results import ResultsWriter

__all__ = ["AttentionTable", "GroundingScores", "HumanAttention", "ResultsWriter", "VQAAccuracy",
           "VQAModule"]
