"""`vqa check-data -c CONFIG`: every split a config names, every problem with its location."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import shapes_split

from vqa.data.shapes import BOXES_FILE

ROOT = Path(__file__).resolve().parents[1]


def overlay(tmp_path: Path, root: Path, **val) -> str:
    data = {s: {**vars(shapes_split(root, s))} for s in ("train", "val")}
    data["val"].update(val)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": data}))
    return str(tmp_path / "data.yaml")


def check(*configs: str) -> subprocess.CompletedProcess:
    """`vqa check-data` in a fresh interpreter (errors to stdout, as the shell shows them)."""
    probe = ("import sys\nfrom vqa.cli import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit as e:\n    print(e)\n    sys.exit(1)")
    args = [a for c in configs for a in ("-c", c)]
    return subprocess.run([sys.executable, "-c", probe, "check-data", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_usable_data_passes(shapes_dir: Path, tmp_path: Path) -> None:
    proc = check(str(ROOT / "configs/shapes/alternating.yaml"), overlay(tmp_path, shapes_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train         300 questions" in proc.stdout and "val           100 questions" in proc.stdout
    assert "ok: the data can be used as configured" in proc.stdout


@pytest.mark.slow
def test_every_problem_is_listed_with_its_location(shapes_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    shutil.copytree(shapes_dir, root)
    images = sorted((root / "val").glob("*.png"))
    images[0].write_bytes(images[0].read_bytes()[:200])  # truncated
    images[1].unlink()  # missing
    annotations = Path(shapes_split(root, "val").annotations)
    anns = json.loads(annotations.read_text())
    anns["annotations"][5]["answer_type"] = "colour"
    annotations.write_text(json.dumps(anns))
    train_questions = Path(shapes_split(root, "train").questions)
    train_questions.write_text(train_questions.read_text()[:-20])  # cut JSON
    boxes = root / BOXES_FILE.format(split="val")
    listed = json.loads(boxes.read_text())
    lost = listed["images"].pop(0)["image_id"]  # an image of the questions without boxes
    boxes.write_text(json.dumps(listed))

    proc = check(str(ROOT / "configs/shapes/alternating.yaml"), overlay(tmp_path, root, boxes=str(boxes)))
    out = proc.stdout
    assert proc.returncode == 1
    assert "error: 5 problem(s): the data cannot be used as configured" in out
    assert f"val: {boxes}: no boxes for 1 image(s) of the questions, e.g. [{lost}]" in out
    assert f"train: {train_questions}: not valid JSON (line 1" in out
    assert f"val: {images[0]}: cannot decode the image (OSError: image file is truncated" in out
    assert f"val: {images[1]}: image not found" in out
    qid = anns["annotations"][5]["question_id"]
    assert f"val: {annotations}: question_id {qid} has answer_type 'colour', expected one of" in out


@pytest.mark.slow
@pytest.mark.parametrize(("content", "message"), [
    ("data: [1, 2", r"error: .*bad.yaml: line 1, column 12: expected ',' or ']'"),
    ("data:\n  val:\n    questions: q.json\n    colour: red\n", "colour"),
])
def test_bad_config_is_refused_as_fit_refuses_it(content: str, message: str,
                                                   tmp_path: Path) -> None:
    """The configs are read by `vqa fit`'s parser: a config it refuses is refused here too,
    without a traceback."""
    (tmp_path / "bad.yaml").write_text(content)
    proc = check(str(ROOT / "configs/shapes/alternating.yaml"), str(tmp_path / "bad.yaml"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert re.search(message, proc.stdout + proc.stderr), proc.stdout + proc.stderr
