"""Multi-process training and evaluation: resuming grouped batches mid-epoch, and 2-process CPU
DDP through the real `vqa` command (a hang fails the test through its timeout)."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import shapes_split

from vqa.data import VQADataModule
from vqa.data.features import extract_features, image_files
from vqa.data.shapes import make_shapes
from vqa.models import AlternatingCoAttention, HieCoAtt, SmallCNN
from vqa.training import VQAModule

pytestmark = pytest.mark.slow  # subprocesses, DDP, resuming


class RecordBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch,
                             batch_idx: int) -> None:
        self.batches.append(batch.question_id.tolist())


def grouped_fit(shapes_dir: Path, root: Path, max_epochs: int, ckpt_path: str | None = None,
                save_at_end: Path | None = None) -> list[list[int]]:
    """Grouped training with a checkpoint every 3 steps (and optionally one written after
    ``fit`` returns); the batches trained, as question ids."""
    dm = VQADataModule(shapes_split(shapes_dir, "train"), image_size=64, max_question_length=16,
                       batch_size=48, group_by_image=True, seed=5)
    model = VQAModule(HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, SmallCNN((8,)),
                               AlternatingCoAttention, dim=16, hidden=16, answer_hidden=16))
    record = RecordBatches()
    every = pl.callbacks.ModelCheckpoint(root, "{step}", every_n_train_steps=3, save_top_k=-1)
    trainer = pl.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0,
                         callbacks=[record, every], default_root_dir=root)
    trainer.fit(model, dm, ckpt_path=ckpt_path, weights_only=False)  # our own checkpoint
    if save_at_end is not None:
        trainer.save_checkpoint(save_at_end)
    return record.batches


def test_grouped_training_resumes_at_the_next_batch(shapes_dir: Path, tmp_path: Path) -> None:
    full = grouped_fit(shapes_dir, tmp_path / "full", max_epochs=3)
    per_epoch = len(full) // 3
    assert per_epoch > 4 and full[:per_epoch] != full[per_epoch:2 * per_epoch]
    for step in (3, per_epoch + 3 - per_epoch % 3):  # mid-epoch, in the first and second epoch
        resumed = grouped_fit(shapes_dir, tmp_path / f"from{step}", 3,
                              str(tmp_path / "full" / f"step={step}.ckpt"))
        assert resumed == full[step:]
    # A checkpoint written after `fit` returned continues with the next epoch's plan.
    grouped_fit(shapes_dir, tmp_path / "one", 1, save_at_end=tmp_path / "end.ckpt")
    assert grouped_fit(shapes_dir, tmp_path / "more", 3, str(tmp_path / "end.ckpt")) == \
        full[per_epoch:]


ROOT = Path(__file__).resolve().parents[1]
VQA = str(Path(sys.executable).parent / "vqa")
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
FEATURE_ENCODER = {"channels": (8, 16, 16), "coord_gates": 0}  # 8 x 8 x 16


def run_vqa(args: list[str], cwd: Path, timeout: float = 240) -> str:
    """Run the `vqa` command; a hang past ``timeout`` kills it (all its processes) and fails."""
    proc = subprocess.Popen([VQA, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"`vqa {' '.join(args)}` hung for {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-5000:]
    return out


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes set with an odd number of validation questions (2 shards of unequal
    length), and a feature cache of each split."""
    root = tmp_path_factory.mktemp("ddp")
    make_shapes(root / "shapes", train=160, val=61, seed=7)
    torch.manual_seed(0)
    encoder = SmallCNN(**FEATURE_ENCODER)
    for split in ("train", "val"):
        extract_features(image_files(root / "shapes" / split), root / "features" / split, encoder,
                         {"name": "SmallCNN"}, 64, batch_size=32, progress=False)
    return root


def overlay(root: Path, variant: str, source: str) -> str:
    """A config overlay on the shapes configs: one short epoch on the tiny set."""
    data = {}
    for split in ("train", "val"):
        data[split] = {**split_config(root / "shapes", split),
                       **({"features": str(root / "features" / split)} if source == "features"
                          else {})}
    cfg = {"trainer": {"max_epochs": 1, "log_every_n_steps": 1, "enable_progress_bar": False},
           "data": {**data, "batch_size": 16, "cache_images": source == "images"}}
    if source == "features":
        cfg["model"] = {"model": {"init_args": {"image_encoder": None}}}  # image_dim: linked
    path = root / f"{variant}-{source}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def split_config(root: Path, split: str) -> dict[str, str]:
    s = shapes_split(root, split)
    return {"questions": s.questions, "annotations": s.annotations, "images": s.images,
            "image_template": s.image_template}


def last_metrics(run: Path) -> dict[str, float]:
    """The validation metrics of the newest CSV log version of a run."""
    versions = sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with open(versions[-1] / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("val/") and v}


@pytest.mark.parametrize("source", ["images", "features"])
@pytest.mark.parametrize("variant", ["alternating", "parallel"])
def test_ddp_fit_two_cpu_processes(ddp_data: Path, tmp_path: Path, variant: str,
                                   source: str) -> None:
    configs = [ROOT / f"configs/shapes/{v}.yaml" for v in dict.fromkeys(["alternating", variant])]
    run_vqa(["fit", *(a for c in configs for a in ("-c", str(c))),
             "-c", overlay(ddp_data, variant, source), *DDP], tmp_path)
    run = tmp_path / "runs/shapes" / variant
    assert (run / "checkpoints/best.ckpt").is_file()
    metrics = last_metrics(run)
    assert 0 <= metrics["val/vqa_acc"] <= 100


def test_ddp_fit_frozen_text_encoder(ddp_data: Path, tmp_path: Path) -> None:
    """A frozen MiniLM under DDP: each process memoises the features of the questions it meets
    (no process waits for another), and both train."""
    config = str(ROOT / "configs/shapes/alternating.yaml")
    run_vqa(["fit", "-c", config, "-c", overlay(ddp_data, "alternating", "images"),
             "-c", str(ROOT / "configs/encoders/minilm.yaml"), *DDP], tmp_path)
    assert 0 <= last_metrics(tmp_path / "runs/shapes/alternating")["val/vqa_acc"] <= 100


def test_ddp_validation_equals_single_process(ddp_data: Path, tmp_path: Path) -> None:
    """61 questions on 2 processes: every question is scored once, so the metrics are exactly
    the single-process ones (a padded distributed sampler would count one question twice)."""
    config = ["-c", str(ROOT / "configs/shapes/alternating.yaml"),
              "-c", overlay(ddp_data, "alternating", "images")]
    run_vqa(["fit", *config, "--trainer.max_epochs", "2"], tmp_path)
    run = tmp_path / "runs/shapes/alternating"
    ckpt = ["--ckpt_path", str(run / "checkpoints/best.ckpt")]
    run_vqa(["validate", *config, *ckpt, "--trainer.devices", "1"], tmp_path)
    single = last_metrics(run)
    run_vqa(["validate", *config, *ckpt, *DDP], tmp_path)
    ddp = last_metrics(run)
    assert ddp.keys() == single.keys() and 0 < single["val/vqa_acc"] < 100
    # Sums of per-question scores and hits: exact. The loss and attention mass average float32
    # outputs whose last bits depend on which questions share a batch: equal to float32 rounding.
    for key, value in single.items():
        if key.endswith(("loss", "mass")):
            assert ddp[key] == pytest.approx(value, rel=1e-5), key
        else:
            assert ddp[key] == value, key
