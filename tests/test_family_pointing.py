"""scripts/family_pointing.py: per-family pointing of each map, the best map of each family."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "family_pointing.py"


def test_each_family_marks_its_best_map(tmp_path: Path) -> None:
    best = {"epoch": 7, "val/vqa_acc": 91.5,
            "val/grounding/word/pointing": 60.0, "val/grounding/question/pointing": 70.0,
            "val/grounding/word/color/pointing": 90.0, "val/grounding/word/shape/pointing": 30.0,
            "val/grounding/question/color/pointing": 40.0,
            "val/grounding/question/shape/pointing": 100.0,
            "val/grounding/question/shape/mass": 55.0}
    (tmp_path / "summary.json").write_text(json.dumps({"best": best}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert "(epoch 7, val/vqa_acc 91.50)" in out
    assert "| map | color | shape | all |" in out
    assert "| word | **90.0** | 30.0 | 60.00 |" in out
    assert "| question | 40.0 | **100.0** | 70.00 |" in out


def test_a_summary_without_family_pointing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"best": {"val/vqa_acc": 50.0}}))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert f"{tmp_path / 'summary.json'}: no per-family pointing" in proc.stderr
