"""Reliability, round two (issue 17): run folders shared by two runs, photos with an EXIF
orientation, features that are not finite or cut short, SIGTERM, resuming with other settings,
W&B without network and a full disk. (Planted cache files: tests/test_safe_cache.py; messages of
the configs, `extract-features` and long questions: tests/test_cli_messages.py.)"""

import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shapes_split
from PIL import Image, ImageOps
from test_resume import ROOT, VQA, final_state, finish, start, write_overlay

from vqa.cli import main, wandb_offline_unless_logged_in
from vqa.data import VQADataModule
from vqa.data.dataset import ImageFiles
from vqa.data.features import ORIENTATION, FeatureCache, check_features
from vqa.data.pipeline import load_image
from vqa.training.run_lock import RunLock

CONFIG = str(ROOT / "configs/shapes/alternating.yaml")
RUN = "runs/shapes/alternating"


# --- Images are read upright ----------------------------------------------------------------

def rotated_jpeg(path: Path) -> Path:
    """An 80 x 40 JPEG stored on its side: left half red, right half blue, EXIF Orientation=6
    (viewers turn it 90 degrees clockwise: 40 wide, 80 high, red on top)."""
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)
    pixels[:, 40:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def test_images_are_read_upright(tmp_path: Path) -> None:
    path = rotated_jpeg(tmp_path / "COCO_val2014_000000000001.jpg")
    with Image.open(path) as img:
        upright = ImageOps.exif_transpose(img)
        assert upright.size == (40, 80)  # what a viewer shows
        expected = np.asarray(upright.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    got = load_image(path, (32, 32)).permute(1, 2, 0).numpy()  # training, extraction, attend
    np.testing.assert_array_equal(got, expected)
    assert got[2, 16, 0] > 200 and got[2, 16, 2] < 60  # red on top
    assert got[29, 16, 2] > 200 and got[29, 16, 0] < 60  # blue below
    from vqa.data.pipeline import InputPipeline
    from vqa.data.tokenizers import WordTokenizer
    from vqa.data.vocab import Vocabulary
    pipeline = InputPipeline(WordTokenizer(Vocabulary(["<pad>", "<unk>"])), Vocabulary(["yes"]),
                             8, (32, 32))
    files = ImageFiles({1: path}, pipeline)
    assert files.original_size(1) == (40, 80)  # (width, height) upright: grounding boxes scale
    np.testing.assert_array_equal(files.raw(1).permute(1, 2, 0).numpy(), expected)


def write_cache(folder: Path, ids: list[int], settings: dict | None = None,
                grid: tuple[int, int] = (2, 2), dim: int = 8) -> Path:
    """A complete feature cache of random features, as `vqa extract-features` lays it out."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(folder / "features.npy",
            rng.standard_normal((len(ids), grid[0] * grid[1], dim)).astype(np.float16))
    (folder / "index.json").write_text(json.dumps({
        "format": "vqa-features/1", "settings": settings or {"orientation": ORIENTATION},
        "shape": [grid[0] * grid[1], dim], "grid": list(grid), "ids": ids, "done": len(ids)}))
    return folder


def image_ids(split) -> list[int]:
    return sorted({q["image_id"] for q in json.loads(Path(split.questions).read_text())["questions"]})


def cached_splits(shapes_dir: Path, tmp_path: Path, settings: dict | None = None):
    splits = {}
    for name in ("train", "val"):
        split = shapes_split(shapes_dir, name)
        split.features = str(write_cache(tmp_path / name, image_ids(split), settings))
        splits[name] = split
    return splits


def test_a_cache_extracted_before_upright_reading_is_pointed_out(shapes_dir: Path,
                                                                  tmp_path: Path) -> None:
    splits = cached_splits(shapes_dir, tmp_path, settings={"name": "resnet152"})
    dm = VQADataModule(splits["train"], splits["val"], batch_size=8)
    with pytest.warns(UserWarning, match=f"feature cache {tmp_path / 'val'} was extracted before "
                                         "images were read upright"):
        dm.check("validate")


# --- Features that are not finite, or cut short ---------------------------------------------

@pytest.mark.parametrize("stage", ["train", "val", "predict"])
def test_non_finite_features_are_an_error_where_they_are_read(stage: str, shapes_dir: Path,
                                                             tmp_path: Path) -> None:
    splits = cached_splits(shapes_dir, tmp_path)
    split = "train" if stage == "train" else "val"
    array = np.load(tmp_path / split / "features.npy", mmap_mode="r+")
    array[3, 0, 0] = np.nan
    array.flush()
    image = image_ids(splits[split])[3]
    dm = VQADataModule(splits["train"], splits["val"], batch_size=8)
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader,
              "predict": dm.predict_dataloader}[stage]()
    with pytest.raises(ValueError, match=re.escape(
            f"feature cache {tmp_path / split}: image {image} (row 3) has NaN or infinite "
            "features")):
        list(loader)


def test_truncated_feature_array_is_named(shapes_dir: Path, tmp_path: Path) -> None:
    splits = cached_splits(shapes_dir, tmp_path)
    array = tmp_path / "val/features.npy"
    array.write_bytes(array.read_bytes()[:-100])
    message = f"{array}: truncated: "
    with pytest.raises(ValueError, match=re.escape(message)):
        FeatureCache(tmp_path / "val")[image_ids(splits["val"])[0]]
    dm = VQADataModule(splits["train"], splits["val"], batch_size=8)
    with pytest.raises(ValueError, match=re.escape(message)):  # at start, before a run folder
        dm.check("validate")
    assert any(message in p for p in check_features(tmp_path / "val"))
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(["check-features", "--cache", str(tmp_path / "val")])


# --- One run per folder ---------------------------------------------------------------------

def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock until it is killed."""
    code = (f"from vqa.training.run_lock import RunLock; lock = RunLock({str(folder)!r}); lock.acquire(); "
            "print('held', flush=True); import time; time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_run_folder_lock(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = hold_lock(tmp_path / "run")
    try:
        with pytest.raises(ValueError, match=re.escape(
                f"{tmp_path / 'run'} is in use: process {other.pid} on host "
                f"{socket.gethostname()} (since ")):
            RunLock(tmp_path / "run").acquire()
    finally:
        other.kill()
        other.wait()
    lock = RunLock(tmp_path / "run")  # left by a dead process: taken over
    lock.acquire()
    lock.release()
    assert f"taking over the lock of process {other.pid}" in capsys.readouterr().err
    lock.acquire()  # released cleanly: taken without a word
    lock.release()
    assert "taking over" not in capsys.readouterr().err


@pytest.mark.long
@pytest.mark.slow
def test_two_fits_into_one_folder(shapes_dir: Path, tmp_path: Path) -> None:
    """Two runs started together: whichever locks the folder first trains, the other refuses,
    and the checkpoints are the first one's alone."""
    config = ["-c", CONFIG, "-c", write_overlay(tmp_path, shapes_dir), "--trainer.max_epochs", "2"]
    runs = {seed: start(["fit", *config, "--seed_everything", str(seed)], tmp_path / "run")
            for seed in (1, 2)}
    outs = {seed: proc.communicate(timeout=300)[0] for seed, proc in runs.items()}
    codes = {seed: proc.returncode for seed, proc in runs.items()}
    assert sorted(codes.values()) == [0, 1], outs
    winner = min(codes, key=codes.get)
    loser = 3 - winner
    assert "Traceback" not in outs[loser]
    assert (f"error: {RUN} is in use: process {runs[winner].pid} on host "
            f"{socket.gethostname()}") in outs[loser], outs[loser]
    kept = torch.load(tmp_path / "run" / RUN / "checkpoints/best.ckpt", weights_only=False)
    alone = tmp_path / "alone"
    finish(start(["fit", *config, "--seed_everything", str(winner)], alone))
    expected = torch.load(alone / RUN / "checkpoints/best.ckpt", weights_only=False)
    for key, value in expected["state_dict"].items():  # the winner's, untouched
        torch.testing.assert_close(kept["state_dict"][key], value, msg=key)


# --- SIGTERM ----------------------------------------------------------------------------------

@pytest.mark.long
@pytest.mark.slow
def test_sigterm_saves_last_and_resumes_exactly(shapes_dir: Path, tmp_path: Path) -> None:
    config = ["-c", CONFIG, "-c", write_overlay(tmp_path, shapes_dir),
              "--last_checkpoint.every_n_train_steps", "1000"]  # only SIGTERM saves mid-epoch
    whole = tmp_path / "whole"
    finish(start(["fit", *config], whole))

    stopped = tmp_path / "stopped"
    proc = start(["fit", *config], stopped)
    started = stopped / RUN / "logs/version_0/pipeline.json"  # written when training starts
    deadline = time.monotonic() + 240
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.5))  # a random batch of the first epochs
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out
    saved = torch.load(stopped / RUN / "checkpoints/last.ckpt", weights_only=False)
    step = saved["global_step"]
    assert 0 < step < 3 * 19 and f"SIGTERM: stopped at epoch {saved['epoch']}, step {step}" in out

    finish(start(["fit", *config, "--ckpt_path", "last"], stopped))
    weights, metrics = final_state(whole)
    resumed_weights, resumed_metrics = final_state(stopped)
    for key, value in weights.items():
        torch.testing.assert_close(resumed_weights[key], value, rtol=1e-5, atol=1e-6, msg=key)
    for key in ("val/vqa_acc", "val/loss"):
        assert float(resumed_metrics[key]) == pytest.approx(float(metrics[key]), rel=1e-5), key


@pytest.mark.slow
def test_sigint_saves_last_and_exits_130(shapes_dir: Path, tmp_path: Path) -> None:
    config = ["-c", CONFIG, "-c", write_overlay(tmp_path, shapes_dir),
              "--last_checkpoint.every_n_train_steps", "1000"]
    proc = start(["fit", *config], tmp_path)
    started = tmp_path / RUN / "logs/version_0/pipeline.json"
    deadline = time.monotonic() + 240
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out, out[-3000:]
    saved = torch.load(tmp_path / RUN / "checkpoints/last.ckpt", weights_only=False)
    assert f"SIGINT: stopped at epoch {saved['epoch']}, step {saved['global_step']}" in out


# --- Resuming with other settings -------------------------------------------------------------

@pytest.mark.slow
def test_resuming_with_other_settings(shapes_dir: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    config = ["-c", CONFIG, "-c", write_overlay(tmp_path, shapes_dir)]
    main(["fit", *config, "--trainer.max_steps", "5"])  # last.ckpt at step 5, mid-epoch 0
    state = torch.load(tmp_path / RUN / "checkpoints/last.ckpt", weights_only=False)
    assert state["VQADataModule"]["batches_done"] == 5 and state["VQADataModule"]["batch_size"] == 16
    resume = ["fit", *config, "--ckpt_path", "last", "--trainer.max_steps", "10"]
    with pytest.raises(SystemExit, match=re.escape(
            "error: cannot resume mid-epoch (5 batches into epoch 0) with other data settings: "
            "data.batch_size 16 -> 8")):
        main([*resume, "--data.batch_size", "8"])
    with pytest.warns(UserWarning, match=re.escape(
            "these settings were replaced by the checkpoint's: "
            "model.optimizer.init_args.lr 0.5 -> 0.001 (to change them")):
        main([*resume, "--model.optimizer.init_args.lr", "0.5"])


# --- W&B without network ----------------------------------------------------------------------

def test_wandb_falls_back_to_offline_without_network(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    (tmp_path / ".netrc").write_text("machine 127.0.0.1\n  login user\n  password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    begin = time.monotonic()
    wandb_offline_unless_logged_in()
    assert time.monotonic() - begin < 10
    assert os.environ["WANDB_MODE"] == "offline"
    assert f"W&B: http://127.0.0.1:{port} cannot be reached; logging offline" in \
        capsys.readouterr().err

    monkeypatch.delenv("WANDB_MODE")
    with socket.socket() as server:  # reachable: stays online
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        wandb_offline_unless_logged_in()
    assert "WANDB_MODE" not in os.environ


# --- A full disk ------------------------------------------------------------------------------

def limit_file_size() -> None:
    """Writes past 2 MB fail (EFBIG), as writes on a full disk fail (ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


@pytest.mark.slow
def test_a_failed_write_is_one_line_naming_the_file(shapes_dir: Path, tmp_path: Path) -> None:
    config = ["-c", CONFIG, "-c", write_overlay(tmp_path, shapes_dir), "--trainer.max_epochs", "1"]
    proc = subprocess.run([VQA, "fit", *config], cwd=tmp_path, capture_output=True, text=True,
                          preexec_fn=limit_file_size, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"error: {tmp_path / RUN}/checkpoints/last.ckpt: File too large (files written before "
                    "are intact)"), last
    assert not list((tmp_path / RUN / "checkpoints").glob("*.tmp"))
