"""The real `vqa` command: fit one epoch on a tiny shapes set, validate, predict, evaluate."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vqa.cli import main, run
from vqa.data.shapes import ANNOTATIONS_FILE, IMAGE_TEMPLATE, QUESTIONS_FILE
from vqa.training import VQAModule

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/shapes/alternating.yaml")
RUN = Path("runs/shapes/alternating")
VQA = str(Path(sys.executable).parent / "vqa")


def split(root: Path, name: str) -> dict:
    return {"questions": str(root / QUESTIONS_FILE.format(split=name)),
            "annotations": str(root / ANNOTATIONS_FILE.format(split=name)),
            "images": str(root / name), "image_template": IMAGE_TEMPLATE}


@pytest.fixture
def tiny_run(shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run folder of `vqa fit` for one short epoch, in a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    override = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 4, "limit_val_batches": 2, "log_every_n_steps": 1,
                    "enable_progress_bar": False},
        "data": {"train": split(shapes_dir, "train"), "val": split(shapes_dir, "val"),
                 "batch_size": 16},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(override))
    main(["fit", "-c", CONFIG, "-c", "tiny.yaml"])
    return tmp_path


def test_fit_validate_predict_evaluate(tiny_run: Path, shapes_dir: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    ckpt = RUN / "checkpoints/best.ckpt"
    assert ckpt.is_file()
    logs = sorted((RUN / "logs").glob("version_*"))
    assert (logs[-1] / "pipeline.json").is_file() and (logs[-1] / "config.yaml").is_file()
    metrics = (logs[-1] / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/vqa_acc/yes_no" in metrics

    # The checkpoint reloads on its own, input pipeline included.
    model = VQAModule.load_from_checkpoint(ckpt, weights_only=False)
    assert model.pipeline is not None and len(model.pipeline.answers) > 5

    # Validation reads the checkpoint's pipeline even when the data would build another one.
    other = {"data": {"train": split(shapes_dir, "val")}, "trainer": {"enable_progress_bar": False}}
    Path("other.yaml").write_text(yaml.safe_dump(other))
    main(["validate", "-c", CONFIG, "-c", "tiny.yaml", "-c", "other.yaml", "--ckpt_path", str(ckpt)])

    main(["predict", "-c", CONFIG, "-c", "tiny.yaml", "--ckpt_path", str(ckpt)])
    results = json.loads((RUN / "results_val.json").read_text())
    assert len(results) == 100
    assert all(set(r) == {"question_id", "answer"} and isinstance(r["answer"], str)
               for r in results)
    assert {r["answer"] for r in results} <= set(model.pipeline.answers.tokens)

    capsys.readouterr()
    main(["evaluate", "--questions", split(shapes_dir, "val")["questions"],
          "--annotations", split(shapes_dir, "val")["annotations"],
          "--results", str(RUN / "results_val.json"), "--out", "metrics.json"])
    printed = capsys.readouterr().out
    written = json.loads(Path("metrics.json").read_text())
    assert f"{written['overall']:6.2f}" in printed
    assert set(written["perAnswerType"]) == {"yes/no", "number", "other"}
    assert "count" in written["perQuestionType"]


@pytest.mark.slow
def test_one_option_moves_every_output(shapes_dir: Path, tmp_path: Path) -> None:
    """`--trainer.default_root_dir X` sends every output of a run to X: checkpoints, results,
    CSV logs (with the saved config and pipeline) and the W&B run (offline). Nothing else is
    written. (A fresh process: W&B keeps its mode per process.)"""
    tiny = {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1},
            "data": {"train": split(shapes_dir, "train"), "val": split(shapes_dir, "val"),
                     "batch_size": 16, "cache_dir": None}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    args = ["-c", CONFIG, "-c", "tiny.yaml", "--trainer.default_root_dir", "elsewhere/X"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no service of
    env |= {"WANDB_MODE": "offline", "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}  # ours
    for command in (["fit"], ["predict", "--ckpt_path", "elsewhere/X/checkpoints/best.ckpt"]):
        subprocess.run([VQA, command[0], *args, *command[1:]], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "tiny.yaml", "wandb-data"]
    run = tmp_path / "elsewhere/X"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(json.loads((run / "results_val.json").read_text())) == 100
    logs = run / "logs/version_0"
    assert {"metrics.csv", "config.yaml", "pipeline.json"} <= {p.name for p in logs.iterdir()}
    assert yaml.safe_load((logs / "config.yaml").read_text())["trainer"]["default_root_dir"] == \
        "elsewhere/X"
    assert len(list((run / "wandb").glob("offline-run-*/run-*.wandb"))) == 2  # fit, predict


def test_an_attention_mechanism_is_one_module_and_one_config(
        shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module and config of docs/attention.md ("Adding an attention mechanism"), kept outside
    the package, train through `vqa fit`; its maps are scored like the paper's."""
    doc = (ROOT / "docs/attention.md").read_text()
    module, config = (re.search(rf"```{lang}\n(# {name}.*?)```", doc, re.DOTALL).group(1)
                      for lang, name in (("python", "mylab/attention.py"),
                                         ("yaml", "configs/mylab/glimpses.yaml")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab/__init__.py").write_text("")
    (tmp_path / "mylab/attention.py").write_text(module)
    (tmp_path / "glimpses.yaml").write_text(config)
    tiny = {"trainer": {"max_epochs": 1, "limit_train_batches": 3, "enable_progress_bar": False},
            "data": {"train": split(shapes_dir, "train"), "val": split(shapes_dir, "val"),
                     "batch_size": 16}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    cli = run(["fit", "-c", CONFIG, "-c", "glimpses.yaml", "-c", "tiny.yaml"])
    assert type(cli.model.model.attention).__name__ == "Glimpses"
    metrics = cli.trainer.callback_metrics
    for key in ("glimpse1/pointing", "glimpse2/mass", "words/word_hit", "glimpse1/relation/pointing"):
        assert 0 <= float(metrics[f"val/grounding/{key}"]) <= 100
    assert "val/grounding/words/pointing" not in metrics  # a map over words only
    assert Path("runs/shapes/glimpses/checkpoints/best.ckpt").is_file()


def test_older_answer_widths_load_as_saved_or_are_refused(shapes_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint of the one-width answer MLP (before the reference widths were the default)
    loads with the widths its hyperparameters hold; without them, the default model does not
    fit its weights, and loading says so by tensor instead of reshaping anything."""
    monkeypatch.chdir(tmp_path)
    tiny = {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
                        "enable_progress_bar": False, "logger": False, "default_root_dir": "old"},
            "data": {"train": split(shapes_dir, "train"), "val": split(shapes_dir, "val"),
                     "batch_size": 16}}
    Path("tiny.yaml").write_text(yaml.safe_dump(tiny))
    main(["fit", "-c", CONFIG, "-c", "tiny.yaml", "--model.model.init_args.answer_hidden", "96"])
    ckpt = Path("old/checkpoints/best.ckpt")
    head = VQAModule.load_from_checkpoint(ckpt, weights_only=True).model.head
    assert (head.w_w.out_features, head.w_p.out_features, head.w_s.out_features) == (96, 96, 96)
    saved = torch.load(ckpt, weights_only=True)
    del saved["hyper_parameters"]["model"]["init_args"]["answer_hidden"]  # as if never saved
    torch.save(saved, "stripped.ckpt")
    with pytest.raises(ValueError, match=r"model.head.w_w.weight is \(96, 128\) in the checkpoint "
                                         r"and \(512, 128\) here .*answer_hidden"):
        VQAModule.load_from_checkpoint("stripped.ckpt", weights_only=True)


def test_make_shapes_command(tmp_path: Path) -> None:
    main(["make-shapes", "--out", str(tmp_path / "s"), "--train", "20", "--val", "10",
          "--seed", "1"])
    assert len(json.loads((tmp_path / "s" / QUESTIONS_FILE.format(split="val")).read_text())
               ["questions"]) == 10


def test_evaluate_reports_bad_input(tmp_path: Path, shapes_dir: Path) -> None:
    (tmp_path / "r.json").write_text("[]")
    with pytest.raises(SystemExit, match="100 question\\(s\\) unanswered"):
        main(["evaluate", "--questions", split(shapes_dir, "val")["questions"],
              "--annotations", split(shapes_dir, "val")["annotations"],
              "--results", str(tmp_path / "r.json")])


CONFIGS = [*([f"configs/{d}/alternating_resnet152.yaml"] for d in
             ("vqa1", "vqa2", "cocoqa", "vqacp2", "vizwiz", "gqa", "clevr", "okvqa")),
           ["configs/vqa1/alternating_resnet152.yaml", "configs/vqa1/trainval_testdev.yaml"],
           ["configs/vqa1/alternating_resnet152.yaml", "configs/vqa1/multiple_choice.yaml"],
           ["configs/vqa2/alternating_resnet152.yaml", "configs/vqa2/trainval_testdev.yaml"],
           ["configs/vqa2/alternating_resnet152.yaml", "configs/vqa2/parallel.yaml",
            "configs/paper/raw_images.yaml"]]


@pytest.mark.parametrize("configs", CONFIGS, ids=lambda c: "+".join(Path(p).parts[-2] + "/" +
                                                                   Path(p).stem for p in c))
def test_paper_configs_parse(configs: list[str], capsys: pytest.CaptureFixture) -> None:
    """Every real-data config composes into the paper's setting, its outputs in one run folder."""
    args = [a for c in configs for a in ("-c", str(ROOT / c))]
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *args, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["model"]["init_args"]
    assert printed["model"]["optimizer"] == "vqa.training.module.rmsprop"  # the paper's
    assert printed["model"]["loss"] == "softmax" and model["dropout"] == 0.5
    assert model["answer_hidden"] == (512 if "cocoqa" in configs[0] else [512, 512, 1024])
    parallel = any("parallel" in c for c in configs)
    assert model["coattention"]["class_path"].endswith(
        "ParallelCoAttention" if parallel else "AlternatingCoAttention")
    assert printed["data"]["batch_size"] == 300 and printed["data"]["group_by_image"] is True
    assert printed["trainer"]["precision"] == "bf16-mixed" and printed["model"]["compile"] is False
    run = printed["trainer"]["default_root_dir"]
    assert run.startswith("runs/") and printed["checkpoint"]["dirpath"] == f"{run}/checkpoints"
    assert [lg["init_args"]["save_dir"] for lg in printed["trainer"]["logger"]] == [run, run]
    assert printed["checkpoint"]["filename"] == ("trainval" if "trainval" in run else "best")
    train = printed["data"]["train"]
    if "multiple_choice" in run:  # the overlay replaces the questions files only
        assert train["questions"].endswith("MultipleChoice_mscoco_train2014_questions.json")
        assert train["annotations"] and train["images"] and train["features"]
    if any("raw_images" in c for c in configs):  # images, and no feature caches
        assert train["features"] is None and train["questions"] and train["images"]
        assert model["image_encoder"]["class_path"] == "vqa.models.TorchvisionEncoder"


def test_train_plus_val_then_test_dev_submission(shapes_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The structure of configs/vqa*/trainval_testdev.yaml, on shapes: a two-part training split,
    no validation split, and a questions-only predict split answered in full."""
    monkeypatch.chdir(tmp_path)
    overlay = yaml.safe_load((ROOT / "configs/vqa2/trainval_testdev.yaml").read_text())
    test_dev = {k: v for k, v in split(shapes_dir, "val").items() if k != "annotations"}
    overlay["trainer"].update({"max_epochs": 1, "limit_train_batches": 3,
                               "enable_progress_bar": False})
    overlay["data"] = {"train": [split(shapes_dir, "train"), split(shapes_dir, "val")],
                       "val": None, "predict": test_dev, "batch_size": 16}
    Path("trainval.yaml").write_text(yaml.safe_dump(overlay))
    main(["fit", "-c", CONFIG, "-c", "trainval.yaml"])
    ckpt = Path("runs/vqa2/trainval/checkpoints/trainval.ckpt")
    assert ckpt.is_file()
    main(["predict", "-c", CONFIG, "-c", "trainval.yaml", "--ckpt_path", str(ckpt)])
    results = json.loads(Path("runs/vqa2/trainval/results_val.json").read_text())  # its subtype
    questions = json.loads(Path(test_dev["questions"]).read_text())["questions"]
    assert sorted(r["question_id"] for r in results) == sorted(q["question_id"] for q in questions)


@pytest.mark.slow
def test_help_lists_every_command_and_tools_start_without_torch(shapes_dir: Path,
                                                                tmp_path: Path) -> None:
    vqa = str(Path(sys.executable).parent / "vqa")
    out = subprocess.run([vqa, "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("fit", "validate", "test", "predict", "make-shapes", "evaluate",
                 "extract-features", "check-features", "attend"):
        assert re.search(rf"^  {name} +\S", out, re.MULTILINE), name
    val = split(shapes_dir, "val")
    annotations = json.loads(Path(val["annotations"]).read_text())["annotations"]
    (tmp_path / "r.json").write_text(json.dumps(
        [{"question_id": a["question_id"], "answer": a["multiple_choice_answer"]}
         for a in annotations]))
    probe = ("import sys\nfrom vqa.cli import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit as e:\n    print(e)\n"
             "print('imported:', [m for m in ('torch', 'pytorch_lightning') if m in sys.modules])")
    printed = {}
    for args in (["make-shapes", "--out", str(tmp_path / "s"), "--train", "10", "--val", "5"],
                 ["evaluate", "--questions", val["questions"], "--annotations",
                  val["annotations"], "--results", str(tmp_path / "r.json")],
                 ["check-features", "--cache", str(tmp_path / "none")]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                             check=True).stdout
        assert out.rstrip().endswith("imported: []"), (args, out)
        printed[args[0]] = out
    assert "shapes dataset written" in printed["make-shapes"]
    assert "100.00" in printed["evaluate"]  # the humans' own most common answers
    assert "error: " in printed["check-features"] and "no feature cache here" in printed["check-features"]


PRESETS = {  # overlay: (mechanism, loss, optimiser, answers, epochs)
    "mcan_small": ("ModularCoAttention", "bce", "torch.optim.Adam", 3129, 13),
    "butd": ("TopDownAttention", "bce", "torch.optim.Adamax", 3129, 30),
    "ban8": ("BilinearAttention", "bce", "torch.optim.Adamax", 3129, 13),
    "san2": ("StackedAttention", "softmax", "vqa.training.module.rmsprop", 1000, 30),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_mechanism_presets_parse_in_their_papers_setting(preset: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "-c", str(ROOT / "configs/vqa2/alternating_resnet152.yaml"),
              "-c", str(ROOT / f"configs/vqa2/{preset}.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    mechanism, loss, optimizer, answers, epochs = PRESETS[preset]
    module = printed["model"]
    assert module["model"]["class_path"] == "vqa.models.VQAModel"
    assert module["model"]["init_args"]["attention"]["class_path"] == f"vqa.models.{mechanism}"
    assert module["loss"] == loss and printed["data"]["num_answers"] == answers
    assert (module["optimizer"] if isinstance(module["optimizer"], str)
            else module["optimizer"]["class_path"]) == optimizer
    assert printed["trainer"]["max_epochs"] == epochs
    assert printed["trainer"]["default_root_dir"] == f"runs/vqa2/{preset}"
    if preset == "mcan_small":
        assert module["optimizer"]["init_args"]["betas"] == [0.9, 0.98]
        assert module["scheduler"]["init_args"] == {"warmup": 3, "milestones": [10, 12], "gamma": 0.2}
        assert module["model"]["init_args"]["attention"]["init_args"]["depth"] == 6


def test_warmup_schedule_follows_mcan_and_ban() -> None:
    from vqa.training import WarmupMultiStepLR

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    schedule = WarmupMultiStepLR(opt, warmup=3, milestones=[10, 12], gamma=0.2)
    rates = []
    for _ in range(13):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates == pytest.approx([2.5e-5, 5e-5, 7.5e-5, *[1e-4] * 7, 2e-5, 2e-5, 4e-6])


def _shapes_model_config(overlay: str, capsys: pytest.CaptureFixture) -> dict:
    """The model section ``vqa fit --print_config`` gives for the shapes recipe plus ``overlay``."""
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"),
              "-c", str(ROOT / f"configs/shapes/{overlay}.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)["model"]


def test_shapes_overlays_set_the_models_optimiser(capsys: pytest.CaptureFixture) -> None:
    """The rate an overlay sets is the model's, with the schedule it was measured with (none for
    BAN); parallel co-attention keeps the recipe's optimiser and takes affinity means and the
    reference code's biases."""
    ban = _shapes_model_config("ban", capsys)
    assert ban["optimizer"]["class_path"] == "torch.optim.Adam"
    assert ban["optimizer"]["init_args"]["lr"] == 5e-4 and ban["scheduler"] is None
    parallel = _shapes_model_config("parallel", capsys)
    assert parallel["optimizer"]["init_args"]["lr"] == 1e-3 and parallel["scheduler"] is not None
    coattention = parallel["model"]["init_args"]["coattention"]
    assert coattention["class_path"] == "vqa.models.ParallelCoAttention"
    assert coattention["init_args"]["affinity_mean"] is True
    assert coattention["init_args"]["bias"] is True


@pytest.mark.parametrize("key", ["optimizer", "lr_scheduler"])
def test_top_level_optimiser_key_is_refused_naming_the_file(key: str, tmp_path: Path) -> None:
    """Lightning's CLI would take a top-level optimiser and drop the model's schedule in silence."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"{key}:\n  class_path: torch.optim.SGD\n  init_args:\n    lr: 0.1\n")
    with pytest.raises(ValueError, match=rf"overlay.yaml: top-level key '{key}'.*model: "):
        run(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), "-c", str(overlay)])
