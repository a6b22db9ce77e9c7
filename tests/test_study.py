"""`vqa study`: the grid of runs, its table's statistics, the files for SLURM and W&B sweeps, and a
study killed during its third run that resumes without retraining the finished ones."""

import csv
import json
import os
import signal
import statistics
import time
from pathlib import Path

import pytest
import yaml
from test_resume import ROOT, start, write_overlay

from vqa.cli import main
from vqa.experiments.study import Study
from vqa.experiments.table import write_tables

CONFIG = str(ROOT / "configs/shapes/alternating.yaml")


def summary(acc: float, yes_no: float, pointing: dict[str, float], wall: float) -> dict:
    return {"format": "vqa-summary/1", "monitor": "val/vqa_acc",
            "best": {"epoch": 3, "step": 40, "val/loss": 1.0, "val/vqa_acc": acc,
                     "val/vqa_acc/yes_no": yes_no,
                     **{f"val/grounding/{level}/pointing": v for level, v in pointing.items()}},
            "parameters": 1000, "train_questions_per_second": 50.0, "wall_seconds": wall}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_table_statistics_on_hand_made_runs(tmp_path: Path) -> None:
    study = Study("s", ["x/shapes.yaml"], ["base", "y/parallel.yaml"], [0, 1, 2])
    runs = study.runs()
    assert [(r.config, r.overlay, r.seed) for r in runs] == [
        ("shapes", o, s) for o in ("base", "parallel") for s in (0, 1, 2)]
    base = [summary(90, 99, {"word": 50, "phrase": 80}, 60),
            summary(92, 97, {"word": 85, "phrase": 70}, 120),
            summary(94, 98, {"word": 60, "phrase": 90}, 180)]
    for run, s in zip(runs[:3], base, strict=True):
        run.folder(tmp_path).mkdir(parents=True)
        (run.folder(tmp_path) / "summary.json").write_text(json.dumps(s))
    only = runs[4]  # parallel: one seed of three finished
    only.folder(tmp_path).mkdir(parents=True)
    (only.folder(tmp_path) / "summary.json").write_text(json.dumps(
        summary(80, 90, {"word": 10, "phrase": 20}, 30)))

    table = {r["overlay"]: r for r in write_tables(runs, tmp_path, "HEADER\n\n")}
    b, p = table["base"], table["parallel"]
    assert (b["n"], b["seeds"], p["n"], p["seeds"]) == (3, "0 1 2", 1, "1")
    assert b["vqa_acc_mean"] == 92 and b["vqa_acc_std"] == 2.0
    assert b["vqa_acc/yes_no_mean"] == 98 and b["vqa_acc/yes_no_std"] == 1.0
    best = [80, 85, 90]  # each run's best level
    assert b["grounding/best/pointing_mean"] == pytest.approx(statistics.fmean(best))
    assert b["grounding/best/pointing_std"] == pytest.approx(statistics.stdev(best))
    assert b["wall_seconds_mean"] == 120
    assert p["vqa_acc_mean"] == 80 and p["vqa_acc_std"] is None

    md = (tmp_path / "table.md").read_text()
    assert md.startswith("HEADER")
    assert "| shapes | base | 3 | 92.00 ± 2.00 | 98.00 ± 1.00 | 85.00 ± 5.00 |" in md
    assert "| shapes | parallel | 1 | 80.00 | 90.00 | 20.00 |" in md
    rows = {r["overlay"]: r for r in read_csv(tmp_path / "table.csv")}
    assert float(rows["base"]["vqa_acc_std"]) == 2.0 and rows["parallel"]["vqa_acc_std"] == ""
    assert len(read_csv(tmp_path / "runs.csv")) == 4
    assert (tmp_path / "accuracy_vs_time.png").stat().st_size > 0


def test_table_of_mechanisms_with_different_maps(tmp_path: Path) -> None:
    """A run's best map is its best over all questions (a family's pointing never counts); rows
    whose maps differ show that best, and runs.csv names the map."""
    study = Study("s", ["x/shapes.yaml"], ["y/san.yaml", "y/ban.yaml", "y/none.yaml"], [0])
    san, ban, none = study.runs()
    for run, pointing in ((san, {"hop1": 70, "hop2": 92, "hop1/relation": 99}),
                          (ban, {"glimpse1": 88, "glimpse2": 81, "glimpse2/count": 100}),
                          (none, {})):
        run.folder(tmp_path).mkdir(parents=True)
        s = summary(95, 96, pointing, 60)
        s["best"]["val/vqa_acc/family/relation"] = 90.0
        (run.folder(tmp_path) / "summary.json").write_text(json.dumps(s))
    table = {r["overlay"]: r for r in write_tables(study.runs(), tmp_path)}
    assert table["san"]["grounding/best/pointing_mean"] == 92
    assert table["ban"]["grounding/best/pointing_mean"] == 88
    header, _, *lines = (tmp_path / "table.md").read_text().splitlines()
    assert "grounding/best/pointing" in header and "vqa_acc/family/relation" in header
    assert "hop" not in header and "glimpse" not in header
    column = header.split(" | ").index("grounding/best/pointing")
    assert [line.split(" | ")[column] for line in lines] == ["92.00", "88.00", "none"]
    assert {r["overlay"]: r.get("grounding/best/map") for r in read_csv(tmp_path / "runs.csv")} == \
        {"san": "hop2", "ban": "glimpse1", "none": ""}


def test_study_commands_and_cluster_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    overlay = str(ROOT / "configs/shapes/parallel.yaml")
    args = ["study", "--out", "st", "--configs", CONFIG, "--overlays", "base", overlay,
            "--seeds", "3", "4", "--name", "demo"]
    main([*args, "--dry-run", "--", "--trainer.max_epochs", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("[new]" in line for line in lines)
    assert lines[3] == (f"3: [new] vqa fit -c {CONFIG} -c {overlay} --trainer.max_epochs 2 "
                        "--seed_everything 4 --data.seed 4 --trainer.default_root_dir "
                        "st/alternating/parallel/seed4 --overwrite")
    saved = json.loads(Path("st/study.json").read_text())
    assert saved["seeds"] == [3, 4] and saved["args"] == ["--trainer.max_epochs", "2"]

    main(["study", "--out", "st", "--slurm", "--sbatch", "gres=gpu:1", "time=2:00:00"])
    script = Path("st/study.sbatch").read_text()
    for line in ("#SBATCH --array=0-3", "#SBATCH --requeue", "#SBATCH --gres=gpu:1",
                 "#SBATCH --time=2:00:00", 'exec vqa study --out st --task "$SLURM_ARRAY_TASK_ID"'):
        assert line in script.splitlines(), line
    main(["study", "--out", "st", "--wandb-sweep"])
    sweep = yaml.safe_load(Path("st/sweep.yaml").read_text())
    assert sweep["method"] == "grid" and sweep["parameters"]["task"]["values"] == [0, 1, 2, 3]
    assert sweep["command"] == ["${env}", "vqa", "study", "--out", "st", "${args}"]

    with pytest.raises(SystemExit, match=r"st/study\.json holds another study"):
        main([*args[:-2], "--seeds", "5"])
    with pytest.raises(SystemExit, match="--task 9: the study has runs 0 to 3"):
        main(["study", "--out", "st", "--task", "9"])


def table_metrics(out: Path) -> list[dict[str, str]]:
    """The table's metric columns (costs and times differ between any two runs)."""
    return [{k: v for k, v in row.items() if not k.startswith(("wall", "train_questions"))}
            for row in read_csv(out / "table.csv")]


@pytest.mark.long
@pytest.mark.slow
def test_a_study_killed_in_its_third_run_resumes(shapes_dir: Path, tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path, shapes_dir)  # deterministic, last.ckpt every 5 steps
    study = ["study", "--configs", CONFIG, "--seeds", "0", "1", "2", "--",
             "-c", overlay, "--trainer.max_epochs", "2"]
    whole = start([*study[:1], "--out", str(tmp_path / "whole"), *study[1:]], tmp_path)
    out, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out[-3000:]

    killed = tmp_path / "killed"
    args = [*study[:1], "--out", str(killed), *study[1:]]
    proc = start(args, tmp_path)
    third = killed / "alternating/base/seed2/checkpoints/last.ckpt"
    deadline = time.monotonic() + 600
    while not third.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and its run
    proc.communicate()
    assert not (killed / "alternating/base/seed2/summary.json").exists()
    finished = {s: (killed / f"alternating/base/seed{s}/summary.json").stat().st_mtime_ns
                for s in (0, 1)}

    proc = start(args, tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "run 0 alternating/base/seed0: finished earlier" in out
    assert "run 2 alternating/base/seed2: resume" in out
    for s, mtime in finished.items():  # not retrained
        assert (killed / f"alternating/base/seed{s}/summary.json").stat().st_mtime_ns == mtime
        assert (killed / f"alternating/base/seed{s}/fit.log").read_text().count("\n$ ") == 1
    log = (killed / "alternating/base/seed2/fit.log").read_text()
    assert log.count("\n$ ") == 2 and "--ckpt_path last" in log
    assert table_metrics(killed) == table_metrics(tmp_path / "whole")
    row = table_metrics(killed)[0]
    assert row["n"] == "3" and row["seeds"] == "0 1 2"
    run = json.loads((killed / "alternating/base/seed2/summary.json").read_text())
    assert run["seed"] == 2 and run["deterministic"] and run["questions_trained"] == 2 * 300
    assert 0 < run["train_seconds"] <= run["wall_seconds"]  # resumed mid-epoch: this session's time


@pytest.mark.slow
def test_sigterm_to_the_study_reaches_its_run(shapes_dir: Path, tmp_path: Path) -> None:
    """A SLURM `--signal=B:TERM` signals the batch shell only (here, the study): the study
    passes it on, the run saves `last.ckpt`, and the study exits 143 without starting more."""
    overlay = write_overlay(tmp_path, shapes_dir)
    out = tmp_path / "st"
    proc = start(["study", "--out", str(out), "--configs", CONFIG, "--seeds", "0", "1", "--",
                  "-c", overlay, "--last_checkpoint.every_n_train_steps", "1000"], tmp_path)
    started = out / "alternating/base/seed0/logs/version_0/pipeline.json"
    deadline = time.monotonic() + 240
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # the study process only
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, text[-3000:]
    assert (out / "alternating/base/seed0/checkpoints/last.ckpt").is_file()
    assert "exit code 143" in (out / "alternating/base/seed0/fit.log").read_text()
    assert not (out / "alternating/base/seed1").exists()
