"""Runs are never overwritten, and a `vqa fit` killed with SIGKILL mid-epoch resumes exactly."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import shapes_split

from vqa.training.checkpoint_io import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[1]
VQA = str(Path(sys.executable).parent / "vqa")


def write_overlay(folder: Path, shapes_dir: Path, group_by_image: bool = True) -> str:
    """Three short epochs of the shapes config on the tiny set, deterministic, `last.ckpt` every
    5 steps; the run folder and its checkpoints are the config's own."""
    data = {s: {**vars(shapes_split(shapes_dir, s))} for s in ("train", "val")}
    cfg = {
        "trainer": {"max_epochs": 3, "deterministic": True, "enable_progress_bar": False,
                    "log_every_n_steps": 1},
        "last_checkpoint": {"every_n_train_steps": 5},
        "model": {"model": {"init_args": {"dropout": 0.2}}},  # dropout: the RNG must resume too
        "data": {**data, "batch_size": 16, "group_by_image": group_by_image},
    }
    (folder / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return str(folder / "tiny.yaml")


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([VQA, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def final_state(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The weights of the run's last checkpoint and the last validation row of its newest log."""
    ckpt = torch.load(run / "runs/shapes/alternating/checkpoints/last.ckpt", weights_only=False)
    logs = sorted((run / "runs/shapes/alternating/logs").glob("version_*"),
                  key=lambda p: int(p.name.split("_")[1]))
    with open(logs[-1] / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/vqa_acc")]
    return ckpt["state_dict"], rows[-1]


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.parametrize("group_by_image", [True, False])
def test_killed_run_resumes_like_an_uninterrupted_one(shapes_dir: Path, tmp_path: Path,
                                                      group_by_image: bool) -> None:
    config = ["-c", str(ROOT / "configs/shapes/alternating.yaml"),
              "-c", write_overlay(tmp_path, shapes_dir, group_by_image)]
    whole = tmp_path / "whole"
    finish(start(["fit", *config], whole))

    killed = tmp_path / "killed"
    proc = start(["fit", *config], killed)
    last = killed / "runs/shapes/alternating/checkpoints/last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists():  # the first in-epoch checkpoint (step 5 of about 19)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    saved = torch.load(last, weights_only=False)
    # Killed mid-way through epoch 0 (15 or 19 batches), after one of its in-epoch checkpoints.
    assert saved["epoch"] == 0 and saved["global_step"] in (5, 10, 15), saved["global_step"]

    out = finish(start(["fit", *config, "--ckpt_path", "last"], killed))
    assert "Restoring states from the checkpoint" in out or "Restored all states" in out
    weights, metrics = final_state(whole)
    resumed_weights, resumed_metrics = final_state(killed)
    assert weights.keys() == resumed_weights.keys()
    for key, value in weights.items():
        torch.testing.assert_close(resumed_weights[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert resumed_metrics["epoch"] == metrics["epoch"] == "2"
    for key in ("val/vqa_acc", "val/loss"):
        assert float(resumed_metrics[key]) == pytest.approx(float(metrics[key]), rel=1e-5), key


@pytest.mark.long
@pytest.mark.slow
def test_fit_refuses_to_replace_an_earlier_runs_checkpoints(shapes_dir: Path,
                                                            tmp_path: Path) -> None:
    config = ["-c", str(ROOT / "configs/shapes/alternating.yaml"),
              "-c", write_overlay(tmp_path, shapes_dir), "--trainer.max_epochs", "1"]
    finish(start(["fit", *config], tmp_path / "run"))
    best = tmp_path / "run/runs/shapes/alternating/checkpoints/best.ckpt"
    before, inode = best.read_bytes(), best.stat().st_ino
    proc = start(["fit", *config], tmp_path / "run")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "error: " in out and "Traceback" not in out  # one line, no traceback
    assert "already holds the checkpoints of an earlier run (best.ckpt, last.ckpt)" in out
    assert best.read_bytes() == before
    # Starting from another run's checkpoint is a new run too: refused the same way.
    other = tmp_path / "other.ckpt"
    other.write_bytes(before)
    proc = start(["fit", *config, "--ckpt_path", str(other)], tmp_path / "run")
    assert proc.wait(timeout=300) != 0 and best.read_bytes() == before
    finish(start(["fit", *config, "--overwrite"], tmp_path / "run"))
    assert best.stat().st_ino != inode  # replaced (by a rename; the same seed gives the same bytes)
    saved = yaml.safe_load(next((tmp_path / "run/runs/shapes/alternating/logs").glob(
        "version_*/config.yaml")).read_text())
    assert saved["overwrite"] is False  # rerunning the saved config asks again


@pytest.mark.slow
def test_resume_from_last_needs_a_last_checkpoint(shapes_dir: Path, tmp_path: Path) -> None:
    proc = start(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"),
                  "-c", write_overlay(tmp_path, shapes_dir), "--ckpt_path", "last"], tmp_path / "run")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in out
    assert "error: --ckpt_path last: no last*.ckpt in ['runs/shapes/alternating/checkpoints'" in out
    assert not (tmp_path / "run/runs").exists()


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path: Path) -> None:
    """What a kill while saving does to the file: the new bytes never replace the old ones
    until they are complete; the CLI's trainers write this way."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "step": 1}, path)
    with pytest.raises(Exception, match="pickle"):  # fails after part of the file is written
        io.save_checkpoint({"state_dict": {"w": torch.zeros(10_000)}, "bad": lambda: 0}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left
