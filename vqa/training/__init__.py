"""Lightning training: the module, the benchmark-accuracy metric and the callbacks."""

from vqa.data.accuracy import VQAAccuracy
from vqa.training.attention_table import AttentionTable
from vqa.training.human_attention import HumanAttention
from vqa.training.module import VQAModule
from vqa.training.progress import EpochLog
from vqa.training.results import ResultsWriter
from vqa.training.schedules import WarmupMultiStepLR
from vqa.training.wandb_logger import WandbLogger

__all__ = ["AttentionTable", "EpochLog", "HumanAttention", "ResultsWriter", "VQAAccuracy",
           "VQAModule", "WandbLogger", "WarmupMultiStepLR"]
