"""Both co-attention variants learn; checkpoints reload to identical predictions."""

from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import shapes_split

from vqa.data import VQADataModule, collate
from vqa.models import AlternatingCoAttention, HieCoAtt, ParallelCoAttention, SmallCNN
from vqa.training import VQAModule


@pytest.fixture(scope="module")
def datamodule(shapes_dir: Path) -> VQADataModule:
    return VQADataModule(shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val"),
                         image_size=64, max_question_length=16, batch_size=16, cache_images=True)


def tiny_model(dm: VQADataModule, coattention: type) -> HieCoAtt:
    return HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, SmallCNN((8, 16, 32)),
                    coattention, dim=48, hidden=48, answer_hidden=64, dropout=0.0)


@pytest.mark.parametrize("coattention", [ParallelCoAttention, AlternatingCoAttention])
def test_overfits_a_tiny_batch(datamodule: VQADataModule, coattention: type) -> None:
    torch.manual_seed(0)
    ds = datamodule.dataset("train")
    batch = collate([ds[i] for i in range(32)])
    module = VQAModule(tiny_model(datamodule, coattention), loss="softmax")
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(150):
        loss = module.loss(module(batch)["logits"], batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    score = batch.target.gather(1, module(batch)["logits"].argmax(1, keepdim=True)).mean()
    assert loss.item() < 0.05 and score.item() > 0.99


def test_bce_loss_decreases(datamodule: VQADataModule) -> None:
    torch.manual_seed(0)
    ds = datamodule.dataset("train")
    batch = collate([ds[i] for i in range(32)])
    module = VQAModule(tiny_model(datamodule, ParallelCoAttention), loss="bce")
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    first = module.loss(module(batch)["logits"], batch).item()
    for _ in range(60):
        loss = module.loss(module(batch)["logits"], batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 3


def test_checkpoint_reload_gives_identical_predictions(datamodule: VQADataModule,
                                                       tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = VQAModule(tiny_model(datamodule, AlternatingCoAttention))
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    trainer.fit(module, datamodule=datamodule)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = VQAModule.load_from_checkpoint(path, weights_only=False)
    assert loaded.pipeline.to_dict() == module.pipeline.to_dict()
    assert loaded.pipeline.grid == (8, 8)
    batch = collate([datamodule.dataset("val")[i] for i in range(16)])
    module.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = module(batch), loaded(batch)
    for key in ("logits", "image_attention", "question_attention"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    # A checkpoint from before alternating's first step lost its unused W_g (registered between
    # w_x and w_h, so later parameters had higher optimiser indices) loads exactly and resumes.
    ckpt = torch.load(path, weights_only=False)
    old_state, shift = {}, 0
    opt = ckpt["optimizer_states"][0]
    renumber = {}
    buffers = {n for n, _ in module.named_buffers()}
    for k, v in ckpt["state_dict"].items():
        if k not in buffers:
            renumber[len(renumber)] = len(renumber) + shift
        old_state[k] = v
        if k.endswith("summarise.w_x.bias"):
            old_state[k.replace("w_x.bias", "w_g.weight")] = torch.randn(48, 48)
            shift += 1
    opt["state"] = {renumber[i]: st for i, st in opt["state"].items()}
    opt["param_groups"][0]["params"] = list(range(len(renumber) + shift))
    ckpt["state_dict"] = old_state
    torch.save(ckpt, tmp_path / "old.ckpt")
    old = VQAModule.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(old(batch)["logits"], a["logits"], rtol=0, atol=0)
    resumed = VQAModule(tiny_model(datamodule, AlternatingCoAttention))
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "old.ckpt",
                weights_only=False)
    assert trainer.current_epoch == 2


def test_non_finite_loss_stops_training_without_a_checkpoint(datamodule: VQADataModule,
                                                             tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = VQAModule(tiny_model(datamodule, AlternatingCoAttention))
    with torch.no_grad():
        module.model.head.w_h.bias[0] = float("nan")  # every logit row has a NaN: loss NaN
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, callbacks=[pl.callbacks.ModelCheckpoint(
                             dirpath=tmp_path / "ckpt", save_last=True)])
    with pytest.raises(FloatingPointError, match=r"train/loss is nan .* epoch 0, batch 0"):
        trainer.fit(module, datamodule=datamodule)
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())


@pytest.mark.parametrize("scheduler", ["MultiStepLR", "OneCycleLR"])
def test_max_epochs_minus_one_trains_until_stopped(datamodule: VQADataModule, tmp_path: Path,
                                                   scheduler: str) -> None:
    """Lightning's `max_epochs: -1` ("until stopped"): a per-epoch scheduler trains; one that
    needs the run's length is refused with a clear error (not an OverflowError)."""
    factory = (partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[3])
               if scheduler == "MultiStepLR" else partial(torch.optim.lr_scheduler.OneCycleLR,
                                                          max_lr=0.01))

    class StopAfterTwoBatches(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            trainer.should_stop = trainer.global_step >= 2

    module = VQAModule(tiny_model(datamodule, AlternatingCoAttention), scheduler=factory)
    trainer = pl.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path,
                         callbacks=[StopAfterTwoBatches()])
    if scheduler == "OneCycleLR":
        with pytest.raises(ValueError, match=r"needs the run.s length .* not -1"):
            trainer.fit(module, datamodule=datamodule)
    else:
        trainer.fit(module, datamodule=datamodule)
        assert trainer.global_step == 2
