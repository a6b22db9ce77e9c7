"""The attention notebook runs clean on checkpoints trained here; `vqa attend` answers and draws."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import shapes_split

from vqa.cli import main
from vqa.data.shapes import BOXES_FILE, IMAGE_TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks/inspect_attention.ipynb"


@pytest.fixture(scope="module")
def checkpoints(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Alternating and parallel co-attention, stacked attention and alternating over boxes, each
    trained for a few batches on tiny shapes."""
    out = []
    for variant in ("alternating", "parallel", "san", "boxes"):
        run = tmp_path_factory.mktemp(variant)
        split = {name: {**vars(shapes_split(shapes_dir, name)), "image_template": IMAGE_TEMPLATE,
                        "boxes": str(shapes_dir / BOXES_FILE.format(split=name))
                        if variant == "boxes" else None}
                 for name in ("train", "val")}
        override = {"trainer": {"max_epochs": 1, "limit_train_batches": 4, "limit_val_batches": 1,
                                "enable_progress_bar": False, "default_root_dir": str(run),
                                "logger": False},
                    "data": {**split, "batch_size": 16}}
        (run / "tiny.yaml").write_text(yaml.safe_dump(override))
        variants = [ROOT / "configs/shapes" / f"{v}.yaml" for v in dict.fromkeys(["alternating", variant])]
        main(["fit", *(a for v in variants for a in ("-c", str(v))), "-c", str(run / "tiny.yaml")])
        out.append(run / "checkpoints/best.ckpt")
    return out


def test_notebook_is_stored_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_notebook_runs_clean(checkpoints: list[Path], shapes_dir: Path) -> None:
    env = {**os.environ, "VQA_CHECKPOINTS": ",".join(map(str, checkpoints)),
           "VQA_SHAPES": str(shapes_dir), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbmake", str(NOTEBOOK),
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


@pytest.mark.slow
def test_attend_command(checkpoints: list[Path], shapes_dir: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture) -> None:
    image = sorted((shapes_dir / "val").glob("*.png"))[0]
    out = tmp_path / "attention.png"
    main(["attend", "--ckpt", str(checkpoints[0]), "--image", str(image),
          "--question", "What color is the circle?", "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    top = [line.split() for line in printed if line.strip()[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(top) == 5
    probs = [float(t[-1]) for t in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="not found"):
        main(["attend", "--ckpt", str(checkpoints[0]), "--image", str(tmp_path / "none.png"),
              "--question", "What?"])
    # No word known: answered from the image, with a warning. No word at all: refused.
    main(["attend", "--ckpt", str(checkpoints[0]), "--image", str(image),
          "--question", "Xylophones zebras?", "--out", str(out)])
    printed = capsys.readouterr()
    assert "1. " in printed.out and "no word of 'Xylophones zebras?'" in printed.err
    with pytest.raises(SystemExit, match="error: the question '  ' has no words"):
        main(["attend", "--ckpt", str(checkpoints[0]), "--image", str(image), "--question", "  "])
