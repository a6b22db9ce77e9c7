import os

os.environ["WANDB_MODE"] = "disabled"  # tests that need a run set "offline" themselves
os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import pytest
import torch

from vqa.data.datamodule import Split
from vqa.data.shapes import ANNOTATIONS_FILE, IMAGE_TEMPLATE, QUESTIONS_FILE, make_shapes

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes dataset shared by the tests that only read it."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), train=300, val=100, seed=3)


def shapes_split(root: Path, split: str) -> Split:
    return Split(str(root / QUESTIONS_FILE.format(split=split)),
                 str(root / ANNOTATIONS_FILE.format(split=split)), str(root / split), IMAGE_TEMPLATE)
