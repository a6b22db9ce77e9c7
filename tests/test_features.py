"""The image-feature cache: extraction killed and resumed, checks, and training from the cache."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from conftest import shapes_split
from PIL import Image

from vqa.cli import main
from vqa.data import VQADataModule
from vqa.data.example import COCO_TEMPLATE
from vqa.data.features import FeatureCache, check_features
from vqa.data.pipeline import load_image, normalize_image
from vqa.data.shapes import ANNOTATIONS_FILE, QUESTIONS_FILE
from vqa.models import AlternatingCoAttention, HieCoAtt, TorchvisionEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def jpegs(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny shapes images re-saved as JPEG under COCO file names, in train/ and val/."""
    out = tmp_path_factory.mktemp("jpegs")
    for split in ("train", "val"):
        (out / split).mkdir()
        for png in sorted((shapes_dir / split).glob("*.png")):
            iid = int(png.stem.rsplit("_", 1)[1])
            Image.open(png).convert("RGB").save(out / split / f"COCO_{split}_{iid:012d}.jpg",
                                                quality=95)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ResNet-18 state dict written by the test (the real local-weights loading path)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return str(path)


def extract_args(images: Path, out: Path, weights: str, size: int, batch: int) -> list[str]:
    return ["extract-features", "--images", str(images), "--out", str(out), "--name", "resnet18",
            "--weights", weights, "--image_size", str(size), "--batch_size", str(batch),
            "--num_workers", "0"]


@pytest.mark.slow
def test_killed_extraction_resumes_verifies_and_trains(
        jpegs: Path, weights: str, shapes_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "train_cache"
    args = extract_args(jpegs / "train", cache, weights, 224, 4)
    proc = subprocess.Popen([sys.executable, "-m", "vqa.cli", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = json.loads((cache / "index.json").read_text())["done"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            done = 0
        if done >= 4:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    total = len(list((jpegs / "train").glob("*.jpg")))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert 4 <= done < total  # killed part-way
    partial = FeatureCache(cache)
    assert not partial.complete and len(partial) >= 4
    assert any("incomplete" in p for p in check_features(cache))

    main(args)  # resume in this process
    train = shapes_split(shapes_dir, "train")
    capsys.readouterr()
    main(["check-features", "--cache", str(cache), "--questions", train.questions])
    assert "ok: all 60 images of the questions are cached" in capsys.readouterr().out
    full = FeatureCache(cache)
    assert full.complete and len(full) == total and full.shape == (49, 512)
    assert sorted(full.meta["ids"]) == full.meta["ids"]

    # Every row, including the ones around the kill, equals a fresh forward pass (float16).
    encoder = TorchvisionEncoder("resnet18", weights, "layer4").eval()
    ids = full.meta["ids"]
    x = torch.stack([normalize_image(load_image(
        jpegs / "train" / f"COCO_train_{i:012d}.jpg", (224, 224))) for i in ids])
    with torch.no_grad():
        expected = encoder(x)  # (M, 49, 512)
    got = torch.stack([full[i] for i in ids]).float()
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)

    # Train one epoch from the cache through `vqa fit` (the model reads features, no encoder).
    val_cache = tmp_path / "val_cache"
    main(extract_args(jpegs / "val", val_cache, weights, 224, 8))
    monkeypatch.chdir(tmp_path)
    split = {name: {"questions": str(shapes_dir / QUESTIONS_FILE.format(split=name)),
                    "annotations": str(shapes_dir / ANNOTATIONS_FILE.format(split=name)),
                    "features": str(c)} for name, c in (("train", cache), ("val", val_cache))}
    override = {
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "log_every_n_steps": 1},
        "model": {"model": {"init_args": {"image_encoder": None, "image_dim": 512}}},
        "data": {**split, "batch_size": 32, "cache_images": False, "cache_dir": "cache"},
    }
    Path("features.yaml").write_text(yaml.safe_dump(override))
    main(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), "-c", "features.yaml"])
    logs = sorted(Path("runs/shapes/alternating/logs").glob("version_*"))
    metrics = (logs[-1] / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/vqa_acc" in metrics
    assert Path("runs/shapes/alternating/checkpoints/best.ckpt").is_file()
    assert len(list(Path("cache").glob("*.npz"))) == 3  # vocab, train and val preprocessed


def test_raw_images_and_cache_give_the_same_outputs(jpegs: Path, weights: str, shapes_dir: Path,
                                                     tmp_path: Path) -> None:
    main(extract_args(jpegs / "val", tmp_path / "cache", weights, 64, 8))
    raw = shapes_split(shapes_dir, "val")
    raw.images, raw.image_template = str(jpegs / "val"), COCO_TEMPLATE
    cached = shapes_split(shapes_dir, "val")
    cached.features = str(tmp_path / "cache")
    train = shapes_split(shapes_dir, "train")
    dms = [VQADataModule(train, split, image_size=64, batch_size=25) for split in (raw, cached)]
    torch.manual_seed(0)
    model = HieCoAtt(dms[0].question_vocab_size, dms[0].answer_vocab_size,
                     TorchvisionEncoder("resnet18", weights, "layer4"),
                     AlternatingCoAttention, dim=32, hidden=32, answer_hidden=32).eval()
    outputs = []
    for dm in dms:
        batches = list(dm.val_dataloader())
        assert (batches[0].image is not None) == (dm is dms[0])
        with torch.no_grad():
            outputs.append([model(**b.inputs()) for b in batches])
    for a, b in zip(*outputs, strict=True):
        for key in ("logits", "image_attention", "question_attention"):
            torch.testing.assert_close(b[key], a[key], rtol=1e-2, atol=1e-3)  # float16 precision


def test_bad_caches_are_reported(jpegs: Path, weights: str, shapes_dir: Path,
                                 tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    main(extract_args(jpegs / "val", cache, weights, 64, 8))
    arr = np.load(cache / "features.npy", mmap_mode="r+")
    arr[3, 0, 0] = np.nan
    arr.flush()
    del arr
    problems = check_features(cache, needed=[123456])
    assert any("has NaN" in p for p in problems)
    assert any("123456" in p for p in problems)
    with pytest.raises(SystemExit, match="check failed"):
        main(["check-features", "--cache", str(cache)])
    with pytest.raises(SystemExit, match="was started with"):  # resuming with other settings
        main(extract_args(jpegs / "val", cache, weights, 96, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no feature cache"):
        FeatureCache(tmp_path / "empty")
    # A split whose questions need images the cache lacks is an error naming them.
    split = shapes_split(shapes_dir, "train")
    split.features = str(cache)
    dm = VQADataModule(split, image_size=64)
    with pytest.raises(ValueError, match="lack 60 image"):
        dm.dataset("train")
