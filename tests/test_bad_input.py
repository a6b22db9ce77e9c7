"""Bad input, one row per case: a one-line `error:` naming the file (and the id or line) and what
was expected, a non-zero exit, no traceback. (Bad dataset files: tests/test_formats.py; a run that
would replace another's checkpoints: tests/test_resume.py; a NaN loss: tests/test_training.py.)"""

import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import shapes_split

from vqa.cli import main
from vqa.data import VQADataModule

ROOT = Path(__file__).resolve().parents[1]


def text_file(path: Path) -> Path:
    path.write_text("not a checkpoint\n")
    return path


def truncated(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:700])
    return path


def older_checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {}, "vqa_vocab": {"format": "vqa-vocab/1"}}, path)
    return path


def not_ours(path: Path) -> Path:
    torch.save({"w": torch.zeros(3)}, path)
    return path


CHECKPOINTS = [  # (make the file, what the error says)
    (text_file, r"a\.ckpt: not a readable checkpoint \(UnpicklingError"),
    (truncated, r"a\.ckpt: not a readable checkpoint \(RuntimeError"),
    (lambda p: p, r"a\.ckpt: checkpoint not found"),
    (older_checkpoint, r"a\.ckpt: checkpoint holds no input pipeline \(it has 'vqa_vocab'"),
    (not_ours, r"a\.ckpt: not a checkpoint of `vqa fit` \(no 'state_dict'\)"),
]


@pytest.mark.parametrize(("make", "message"), CHECKPOINTS)
def test_bad_checkpoint_for_attend(make, message: str, shapes_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    ckpt = make(tmp_path / "a.ckpt")
    image = sorted((shapes_dir / "val").glob("*.png"))[0]
    with pytest.raises(SystemExit, match="^error: .*" + message):
        main(["attend", "--ckpt", str(ckpt), "--image", str(image), "--question", "What?"])


@pytest.mark.parametrize(("make", "message"), [c for c in CHECKPOINTS if c[0] is not not_ours])
def test_bad_checkpoint_for_validate(make, message: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ckpt = make(tmp_path / "a.ckpt")
    with pytest.raises(SystemExit, match="^error: .*" + message):
        main(["validate", "-c", str(ROOT / "configs/shapes/alternating.yaml"),
              "--ckpt_path", str(ckpt)])


@pytest.mark.parametrize(("content", "message"), [
    (lambda png: png[: len(png) // 2], r"cannot decode the image \(OSError: image file is truncated"),
    (lambda png: b"", r"cannot decode the image \(UnidentifiedImageError"),
    (lambda png: b"just text\n", r"cannot decode the image \(UnidentifiedImageError"),
])
def test_undecodable_image_is_named(content, message: str, shapes_dir: Path,
                                    tmp_path: Path) -> None:
    """A truncated, zero-byte or non-image file fails where it is read, naming the file."""
    root = tmp_path / "shapes"
    shutil.copytree(shapes_dir, root)
    victim = sorted((root / "val").glob("*.png"))[3]
    victim.write_bytes(content(victim.read_bytes()))
    dm = VQADataModule(shapes_split(root, "train"), shapes_split(root, "val"), image_size=32,
                       cache_images=True)
    with pytest.raises(ValueError, match=re.escape(str(victim)) + ": " + message):
        dm.dataset("val")
