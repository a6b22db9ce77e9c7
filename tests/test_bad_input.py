"""Bad input, one row per case: a one-line `error:` naming the file (and the id or line) and what
was expected, a non-zero exit, no traceback. (Bad dataset files: tests/test_formats.py; a run that
would replace another's checkpoints: tests/test_resume.py; a NaN loss: tests/test_training.py.)"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shapes_split
from PIL import Image

from vqa.cli import main
from vqa.data import VQADataModule
from vqa.data.pipeline import load_image
from vqa.training import VQAAccuracy

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


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("size", [(1, 1), (640, 90)])
def test_any_image_mode_and_size_becomes_the_models_input(mode: str, size: tuple[int, int],
                                                          tmp_path: Path) -> None:
    """Grayscale, CMYK, RGBA, palette and 16-bit images, tiny or elongated: RGB at the pipeline's
    (height, width)."""
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    Image.new(mode, size).save(path)
    image = load_image(path, (48, 64))
    assert image.shape == (3, 48, 64) and image.dtype == torch.uint8


def test_huge_image_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PIL's decompression-bomb limit (here lowered to 100 pixels): an error naming it."""
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match=r"huge\.png: cannot decode the image \(DecompressionBomb"):
        load_image(path, (32, 32))


def test_long_question_is_cut_and_unknown_answer_still_scored(shapes_dir: Path) -> None:
    """A question longer than max_question_length keeps its first tokens (documented cut); an
    answer outside the answer vocabulary is kept for scoring (it counts, as 0), not dropped."""
    dm = VQADataModule(shapes_split(shapes_dir, "train"), image_size=32, max_question_length=4,
                       num_answers=2)
    encoded = dm.pipeline.encode(["is the red circle left of the blue square"])
    assert encoded.lengths.tolist() == [4] and encoded.ids.shape == (1, 4)
    ds = dm.dataset("train")
    outside = [i for i in range(len(ds)) if ds.data.answer_index[i] == -100]
    assert outside  # answers beyond the 2 most common
    metric = VQAAccuracy(ds.data.group_names)
    items = [ds[i] for i in outside[:5]]
    metric.update(torch.randn(5, 2), torch.stack([it["target"] for it in items]),
                  torch.stack([it["groups"] for it in items]))
    assert metric.count[0] == 5 and metric.compute()[""] == 0


def test_feature_cache_of_another_shape_is_refused(shapes_dir: Path, tmp_path: Path) -> None:
    """A pipeline (a checkpoint's) expecting 8 x 8 x 16 features, given a cache of 4 x 4 x 32."""
    val = shapes_split(shapes_dir, "val")
    ids = sorted({q["image_id"] for q in json.loads(Path(val.questions).read_text())["questions"]})
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "features.npy", np.zeros((len(ids), 16, 32), np.float16))
    (cache / "index.json").write_text(json.dumps({
        "format": "vqa-features/1", "settings": {"name": "test"}, "shape": [16, 32],
        "grid": [4, 4], "ids": ids, "done": len(ids)}))
    pipeline = VQADataModule(shapes_split(shapes_dir, "train"), image_size=64).pipeline
    pipeline.grid, pipeline.image_dim = (8, 8), 16
    pipeline.save(tmp_path / "pipeline.json")
    val.features = str(cache)
    dm = VQADataModule(val=val, pipeline=str(tmp_path / "pipeline.json"))
    with pytest.raises(ValueError, match=r"cache holds a \(4, 4\) grid of 32-d features; the input "
                                         r"pipeline expects \(8, 8\) x 16"):
        dm.dataset("val")


@pytest.mark.parametrize(("args", "message"), [
    (["-c", "missing.yaml"], "File does not exist: .*missing.yaml"),
    (["--model.model.init_args.coattention", "vqa.models.Nope"], "has no attribute 'Nope'"),
])
def test_config_naming_a_missing_file_or_class(args: list[str], message: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), *args])
    assert exit_.value.code != 0
    assert re.search(message, capsys.readouterr().err)


def test_a_start_that_fails_on_bad_data_leaves_no_run_folder(shapes_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.chdir(tmp_path)
    train = {**vars(shapes_split(shapes_dir, "train")), "images": str(tmp_path / "nowhere")}
    Path("bad.yaml").write_text(json.dumps({"data": {"train": train}}))
    for _ in range(2):
        with pytest.raises(SystemExit, match=r"error: .*nowhere/shapes_train_\d+\.png: image \d+ "
                                             r"not found \(needed by question_id \d+\)"):
            main(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), "-c", "bad.yaml"])
    assert not Path("runs").exists()


def test_error_in_a_loader_worker_is_one_line(shapes_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated image met by a data-loader worker: the worker's message, not its traceback."""
    root = tmp_path / "shapes"
    shutil.copytree(shapes_dir, root)
    victim = sorted((root / "val").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    monkeypatch.chdir(tmp_path)
    data = {s: {**vars(shapes_split(root, s))} for s in ("train", "val")}
    Path("w.yaml").write_text(json.dumps({"data": {**data, "cache_images": False,
                                                   "num_workers": 1}}))
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "-c", str(ROOT / "configs/shapes/alternating.yaml"), "-c", "w.yaml",
              "--trainer.logger", "false"])
    message = str(exit_.value.code)
    assert message.startswith(f"error: {victim}: cannot decode the image") and "\n" not in message
