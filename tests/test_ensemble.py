"""Saved answer probabilities (`vqa predict --results.probabilities true`) and `vqa ensemble`."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import shapes_split

from vqa._io import read_json, write_json
from vqa.benchmark import evaluate_files, format_table
from vqa.cli import main
from vqa.data.pipeline import InputPipeline
from vqa.experiments.ensemble import data_module

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/shapes/alternating.yaml")


def split_config(root: Path, name: str, questions: str | None = None) -> dict[str, str]:
    s = shapes_split(root, name)
    return {"questions": questions or s.questions, "annotations": s.annotations,
            "images": s.images, "image_template": s.image_template}


def write_overlay(path: Path, shapes_dir: Path, val_questions: str | None = None) -> str:
    """A shapes overlay: a few training batches, the tiny data set, caches under ``path``'s
    folder; ``val_questions`` replaces the val (and predict) split's questions file."""
    cfg = {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
                       "enable_progress_bar": False, "logger": False},
           "data": {"train": split_config(shapes_dir, "train"),
                    "val": split_config(shapes_dir, "val", val_questions),
                    "batch_size": 16, "cache_dir": str(path.parent / "cache")}}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def overlay(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_overlay(tmp_path_factory.mktemp("ensemble") / "tiny.yaml", shapes_dir)


def save(path: Path, ids: list[int], probabilities: np.ndarray, answers: list[str]) -> str:
    np.savez(path, question_id=np.array(ids, np.int64),
             probabilities=probabilities.astype(np.float16), answers=np.array(answers, dtype=str))
    return str(path)


def split_of(configs: list[str]) -> tuple[list[str], list[int]]:
    """The answer vocabulary the configs' data builds, and the predict split's question ids."""
    dm = data_module(configs)
    return list(dm.pipeline.answers.tokens), [ex.question_id for ex in
                                              dm.dataset("predict").examples]


def test_the_ensemble_answers_the_argmax_of_the_mean(overlay: str, shapes_dir: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """On questions 0-9 member 1 votes answer 0 (0.6 vs 0.4), member 2 answer 2 (0.6 vs 0.4),
    both give answer 1 0.4: the mean picks answer 1, which neither voted for. Elsewhere random
    distributions; member 2's rows are stored in another order."""
    answers, ids = split_of([CONFIG, overlay])
    rng = np.random.default_rng(0)
    p1, p2 = (rng.dirichlet(np.ones(len(answers)), len(ids)).astype(np.float16) for _ in range(2))
    p1[:10], p2[:10] = 0, 0
    p1[:10, 0], p1[:10, 1], p2[:10, 2], p2[:10, 1] = 0.6, 0.4, 0.6, 0.4
    order = rng.permutation(len(ids))
    a = save(tmp_path / "a.npz", ids, p1, answers)
    b = save(tmp_path / "b.npz", [ids[i] for i in order], p2[order], answers)
    out = tmp_path / "ensemble.json"
    main(["ensemble", "-c", CONFIG, "-c", overlay, "--probabilities", a, b, "--out", str(out)])
    mean = (p1.astype(np.float32) + p2.astype(np.float32)) / 2
    got = {r["question_id"]: r["answer"] for r in read_json(out)}
    assert got == {q: answers[i] for q, i in zip(ids, mean.argmax(1), strict=True)}
    assert {got[q] for q in ids[:10]} == {answers[1]}
    assert answers[1] not in {answers[0], answers[2]}
    printed = capsys.readouterr().out
    val = shapes_split(shapes_dir, "val")
    table = format_table(evaluate_files(val.questions, val.annotations, out))
    assert printed.startswith(f"ensemble of 2 models written to {out}\nensemble: {table}\n")
    assert f"member {a}: vqa:" in printed and f"member {b}: vqa:" in printed


def test_multiple_choice_picks_the_best_candidate(shapes_dir: Path, tmp_path: Path) -> None:
    """The mean's top answer is no candidate: the best candidate is written, as the questions
    file spells it (the data's MultipleChoice hook, as `vqa predict` picks)."""
    data = read_json(shapes_split(shapes_dir, "val").questions)
    answers, _ = split_of([CONFIG, write_overlay(tmp_path / "open.yaml", shapes_dir)])
    choices = [answers[2], answers[1], "not an answer"]
    data["task_type"] = "Multiple Choice"
    for q in data["questions"]:
        q["multiple_choices"] = choices
    write_json(tmp_path / "mc.json", data)
    overlay = write_overlay(tmp_path / "mc.yaml", shapes_dir, str(tmp_path / "mc.json"))
    ids = [q["question_id"] for q in data["questions"]]
    p = np.zeros((2, len(ids), len(answers)))
    p[0, :, :3], p[1, :, :3] = [0.5, 0.2, 0.3], [0.5, 0.4, 0.1]  # mean: 0.5, 0.3, 0.2
    files = [save(tmp_path / f"{i}.npz", ids, p[i], answers) for i in range(2)]
    out = tmp_path / "ensemble.json"
    main(["ensemble", "-c", CONFIG, "-c", overlay, "--probabilities", *files, "--out", str(out)])
    assert {r["answer"] for r in read_json(out)} == {answers[1]}
    val = shapes_split(shapes_dir, "val")
    assert evaluate_files(tmp_path / "mc.json", val.annotations, out)["num_questions"] == 100


def test_members_must_share_answers_and_questions(overlay: str, tmp_path: Path) -> None:
    answers, ids = split_of([CONFIG, overlay])
    p = np.full((len(ids), len(answers)), 1 / len(answers))
    a = save(tmp_path / "a.npz", ids, p, answers)
    renamed = save(tmp_path / "renamed.npz", ids, p, [*answers[:3], "zebra", *answers[4:]])
    fewer = save(tmp_path / "fewer.npz", ids[1:], p[1:], answers)
    args = ["ensemble", "-c", CONFIG, "-c", overlay, "--out", str(tmp_path / "e.json"),
            "--probabilities", a]
    with pytest.raises(SystemExit) as exit_:
        main([*args, renamed])
    assert exit_.value.code == (f"error: {renamed}: its answer vocabulary differs from that of {a} "
                                f"(answer 3 is 'zebra', not {answers[3]!r}); an ensemble averages "
                                "models with one vocabulary")
    with pytest.raises(SystemExit) as exit_:
        main([*args, fewer])
    assert exit_.value.code == (f"error: {fewer}: its question ids differ from those of {a} "
                                f"(1 missing, e.g. [{ids[0]}])")
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(SystemExit) as exit_:
        main([*args[:-1], str(tmp_path / "junk.npz")])
    assert str(exit_.value.code).startswith(f"error: {tmp_path / 'junk.npz'}: not a .npz "
                                            "probabilities file (")
    assert not (tmp_path / "e.json").exists()


@pytest.fixture(scope="module")
def members(overlay: str) -> list[Path]:
    """Two tiny checkpoints (seeds 0 and 1), each predicting the val split with probabilities."""
    runs = []
    for seed in (0, 1):
        run = Path(overlay).parent / f"seed{seed}"
        common = ["-c", CONFIG, "-c", overlay, "--trainer.default_root_dir", str(run)]
        main(["fit", *common, "--seed_everything", str(seed)])
        main(["predict", *common, "--ckpt_path", str(run / "checkpoints/best.ckpt"),
              "--results.probabilities", "true"])
        runs.append(run)
    return runs


def test_predict_saves_each_questions_probabilities(members: list[Path], shapes_dir: Path) -> None:
    run = members[0]
    with np.load(run / "probabilities_val.npz", allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    assert set(saved) == {"question_id", "probabilities", "answers"}
    ids = saved["question_id"]
    assert ids.dtype == np.int64 and (np.diff(ids) > 0).all()
    assert ids.tolist() == sorted(q["question_id"] for q in read_json(
        shapes_split(shapes_dir, "val").questions)["questions"])
    pipeline = InputPipeline.load(run / "checkpoints/best.ckpt")
    assert saved["answers"].dtype.kind == "U"
    assert saved["answers"].tolist() == list(pipeline.answers.tokens)
    p = saved["probabilities"]
    assert p.dtype == np.float16 and p.shape == (100, len(pipeline.answers))
    assert np.allclose(p.astype(np.float32).sum(1), 1, atol=1e-2) and (p >= 0).all()
    assert [r["question_id"] for r in read_json(run / "results_val.json")] == ids.tolist()


def test_ensemble_of_two_trained_models(members: list[Path], overlay: str, shapes_dir: Path,
                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = [str(run / "probabilities_val.npz") for run in members]
    out = tmp_path / "ensemble.json"
    capsys.readouterr()
    main(["ensemble", "-c", CONFIG, "-c", overlay, "--probabilities", *files, "--out", str(out)])
    printed = capsys.readouterr().out
    loaded = [np.load(f) for f in files]
    mean = (loaded[0]["probabilities"].astype(np.float32) +
            loaded[1]["probabilities"].astype(np.float32)) / 2
    answers = loaded[0]["answers"]
    assert read_json(out) == [{"question_id": int(q), "answer": str(answers[i])}
                              for q, i in zip(loaded[0]["question_id"], mean.argmax(1),
                                              strict=True)]
    val = shapes_split(shapes_dir, "val")
    main(["evaluate", "--questions", val.questions, "--annotations", val.annotations,
          "--results", str(out)])
    table = capsys.readouterr().out.strip()
    assert f"ensemble: {table}\n" in printed
    overall = evaluate_files(val.questions, val.annotations, out)["overall"]
    assert re.search(rf"^overall: ensemble {overall:.2f}; members \d+\.\d\d, \d+\.\d\d$", printed,
                     re.M)
    assert all(f"member {f}: vqa: VQA accuracy (100 questions)" in printed for f in files)


@pytest.mark.slow
def test_ddp_predict_saves_the_probabilities_of_a_single_process(members: list[Path],
                                                                 overlay: str,
                                                                 tmp_path: Path) -> None:
    """Two CPU processes gather rows and probabilities: the file holds every question once,
    with the probabilities one process gives."""
    ckpt = members[0] / "checkpoints/best.ckpt"
    args = [str(Path(sys.executable).parent / "vqa"), "predict", "-c", CONFIG, "-c", overlay,
            "--ckpt_path", str(ckpt), "--results.probabilities", "true",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "WANDB_MODE": "disabled"})
    try:
        log, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("DDP predict hung")
    assert proc.returncode == 0, log[-3000:]
    with np.load(tmp_path / "probabilities_val.npz") as ddp, \
            np.load(members[0] / "probabilities_val.npz") as single:
        assert ddp["question_id"].tolist() == single["question_id"].tolist()
        assert np.allclose(ddp["probabilities"].astype(np.float32),
                           single["probabilities"].astype(np.float32), atol=2e-3)
