"""Rank correlation with VQA-HAT style human attention maps, on maps generated here."""

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import shapes_split
from PIL import Image

from vqa.data import VQADataModule
from vqa.models import AlternatingCoAttention, HieCoAtt, SmallCNN
from vqa.training import HumanAttention, VQAModule
from vqa.training.human_attention import rank_correlation, read_hat


def test_rank_correlation() -> None:
    a = np.arange(20.0)
    assert rank_correlation(a, a ** 3) == pytest.approx(1.0)  # monotone: ranks agree
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    tied = np.array([0, 0, 0, 1, 2.0])  # ties share their average rank
    assert rank_correlation(tied, np.array([0, 0, 0, 5, 9.0])) == pytest.approx(1.0)
    assert np.isnan(rank_correlation(np.zeros(5), a[:5]))


def write_maps(folder: Path, maps: dict[int, list[np.ndarray]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for qid, arrays in maps.items():
        for k, m in enumerate(arrays, 1):
            Image.fromarray(m.astype(np.uint8)).save(folder / f"{qid}_{k}.png")


def test_callback_scores_generated_maps(shapes_dir: Path, tmp_path: Path) -> None:
    dm = VQADataModule(shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val"),
                       image_size=32, max_question_length=16, batch_size=50)
    examples = dm.dataset("val").examples
    rng = np.random.default_rng(0)
    # Human maps in the VQA-HAT layout, at another resolution than the model's grid (64 px):
    # bright where the question's objects are, 1-3 annotators per question.
    maps = {}
    for ex in examples[:30]:
        base = np.zeros((64, 64))
        for x0, y0, x1, y1 in ex.extra["grounding"]["boxes"]:
            base[y0:y1, x0:x1] = 255
        maps[ex.question_id] = [np.clip(base + rng.uniform(0, 40, base.shape), 0, 255)
                                for _ in range(rng.integers(1, 4))]
    write_maps(tmp_path / "hat", maps)
    assert {q: len(p) for q, p in read_hat(tmp_path / "hat").items()} == {
        q: len(m) for q, m in maps.items()}

    callback = HumanAttention(str(tmp_path / "hat"))
    # A model map that is the human map itself correlates perfectly, at any model grid.
    qid = next(q for q, m in maps.items() if m[0].max() > 100)
    own = torch.from_numpy(np.asarray(Image.fromarray(maps[qid][0].astype(np.uint8)).resize(
        (14, 14), Image.Resampling.BOX), np.float64)).reshape(1, -1)  # (1, 196)
    assert callback.score(own, (14, 14), read_hat(tmp_path / "hat")[qid][:1])[0] == pytest.approx(1.0)

    torch.manual_seed(0)
    model = HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, SmallCNN((8, 16)),
                     AlternatingCoAttention, dim=16, hidden=16, answer_hidden=16)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, callbacks=[callback])
    trainer.validate(VQAModule(model), datamodule=dm)
    assert trainer.callback_metrics["val/hat/questions"] == len(maps)  # all 30 with maps
    for level in ("word", "phrase", "question"):
        assert -1 <= trainer.callback_metrics[f"val/hat/{level}/rank_correlation"] <= 1


def test_bad_hat_folder(tmp_path: Path) -> None:
    (tmp_path / "hat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "hat" / "map.png")
    with pytest.raises(ValueError, match=r"map\.png: expected a VQA-HAT map"):
        read_hat(tmp_path / "hat")
    with pytest.raises(FileNotFoundError, match="no VQA-HAT folder"):
        read_hat(tmp_path / "missing")
