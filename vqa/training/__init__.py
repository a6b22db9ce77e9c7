"""Lightning training: the module, the official-accuracy metric and callbacks."""

from vqa.training.metrics import VQAAccuracy
from vqa.training.module import VQAModule
from vqa.training.results import ResultsWriter

__all__ = ["ResultsWriter", "VQAAccuracy", "VQAModule"]
