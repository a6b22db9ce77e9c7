"""``VQACLI``: the LightningCLI behind ``vqa fit | validate | test | predict``."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import set_parsing_settings
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from vqa.data.pipeline import InputPipeline, read_checkpoint
from vqa.training.checkpoint_io import AtomicCheckpointIO
from vqa.training.progress import EpochLog
from vqa.training.results import ResultsWriter
from vqa.training.run_lock import RunLock
from vqa.training.stop_signals import StopOnSignal, Stopped
from vqa.training.summary import RunSummary


def run_folder(key: str, suffix: str = "") -> str:
    """``${trainer.default_root_dir}`` followed by ``suffix``, as an interpolation written at the
    config key ``key`` (``trainer.logger.0.init_args.save_dir``): under a subcommand OmegaConf
    resolves interpolations relative to the node, so the path climbs to their common parent."""
    here, there = key.split("."), ["trainer", "default_root_dir"]
    common = 0
    while common < min(len(here), len(there)) and here[common] == there[common]:
        common += 1
    return "${" + "." * (len(here) - common) + ".".join(there[common:]) + "}" + suffix


# The defaults every run shares (``vqa fit --print_config`` shows them resolved). Every output
# path is derived from the run folder, ``trainer.default_root_dir``.
DEFAULTS: dict[str, Any] = {
    "seed_everything": 0,
    "trainer.default_root_dir": "runs/default",
    "trainer.log_every_n_steps": 50,
    "trainer.enable_progress_bar": sys.stdout.isatty(),  # a log file gets EpochLog's lines
    "trainer.logger": [
        {"class_path": "pytorch_lightning.loggers.CSVLogger",
         "init_args": {"save_dir": run_folder("trainer.logger.0.init_args.save_dir"),
                       "name": "logs"}},
        {"class_path": "vqa.training.WandbLogger",  # offline unless `wandb login`
         "init_args": {"save_dir": run_folder("trainer.logger.1.init_args.save_dir"),
                       "name": run_folder("trainer.logger.1.init_args.name"), "project": "vqa"}},
    ],
    "trainer.callbacks": [{"class_path": "vqa.training.AttentionTable"}],
    "checkpoint.dirpath": run_folder("checkpoint.dirpath", "/checkpoints"),
    "checkpoint.filename": "best",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,  # last.ckpt after every validation
    "checkpoint.enable_version_counter": False,
    "last_checkpoint.dirpath": run_folder("last_checkpoint.dirpath", "/checkpoints"),
    "last_checkpoint.save_last": True,
    "last_checkpoint.save_top_k": 0,
    "last_checkpoint.every_n_train_steps": 500,  # resume a killed run with --ckpt_path last
    "last_checkpoint.enable_version_counter": False,  # one last.ckpt, the newest state
}


class VQACLI(LightningCLI):
    """Composes a run from config files (``-c``; a group may name a file: ``model:
    ../model/hiecoatt_small.yaml``; ``trainer.callbacks+:`` adds to the list), with one run
    folder, ``trainer.default_root_dir``, from which every output is derived: logs, W&B,
    checkpoints, results. Links the sizes the data's input pipeline determines into the model
    and the data's metric into the best-checkpoint monitor, and evaluates a checkpoint with its
    own pipeline.

    Every run has, besides ``trainer.callbacks``: ``checkpoint`` (the best checkpoint by the
    validation metric, and ``last.ckpt`` after each validation), ``last_checkpoint``
    (``last.ckpt`` every N training steps), ``results`` (the predict split's results file),
    ``epoch_log`` (a line per epoch where no progress bar is drawn) and ``summary``
    (``summary.json``, the run in one row, which a study table gathers).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Config files may interpolate (``${trainer.default_root_dir}``), absolute paths allowed.
        set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        kwargs.setdefault("parser_kwargs", {}).setdefault("parser_mode", "omegaconf+")
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # One place for the optimiser and schedule: ``model.optimizer`` / ``model.scheduler``.
        # Lightning's top-level ``optimizer`` key would replace ``configure_optimizers`` and
        # silently drop the model's scheduler, so it is not offered.
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        for source, target in (("question_vocab_size", "vocab_size"),
                               ("answer_vocab_size", "num_answers"),
                               ("image_dim", "image_dim"), ("text_model", "text_model")):
            parser.link_arguments(f"data.{source}", f"model.model.init_args.{target}",
                                  apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(EpochLog, "epoch_log")
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.link_arguments("data.monitor", "checkpoint.monitor", apply_on="instantiate")
        parser.set_defaults(DEFAULTS)
        parser.add_argument("--overwrite", action="store_true",
                            help="let `fit` replace the checkpoints of an earlier run in the same "
                                 "folder (without it, `fit` refuses)")

    def before_fit(self) -> None:
        """The data is checked, then the run folder locked (``RunLock``: a second run into it
        refuses). A new run never replaces an earlier run's checkpoints: resume it
        (``--ckpt_path`` to a checkpoint of its own folder), write elsewhere, or say
        ``--overwrite`` (which is not kept in the saved config, so rerunning that config asks
        again)."""
        self._check_data()
        if self.trainer.global_rank == 0:  # the process that writes the run's files
            self._lock = RunLock(self.trainer.default_root_dir)
            self._lock.acquire()
        cfg = self.config[self.subcommand]
        folders = [Path(c.dirpath) for c in self.trainer.checkpoint_callbacks
                   if getattr(c, "dirpath", None)]
        ckpt = Path(cfg["ckpt_path"]).resolve() if cfg.get("ckpt_path") else None
        resuming = ckpt is not None and any(ckpt.parent == f.resolve() for f in folders)
        if not (resuming or cfg.get("overwrite")):
            for folder in folders:
                found = sorted(p.name for p in folder.glob("*.ckpt"))
                if found:
                    raise ValueError(
                        f"{folder} already holds the checkpoints of an earlier run "
                        f"({', '.join(found)}); `vqa fit` would replace them. Resume it with "
                        "--ckpt_path last, point this run elsewhere (--trainer.default_root_dir), "
                        "or pass --overwrite")
        cfg["overwrite"] = False

    def _check_data(self) -> None:
        """Bad data fails here, before Lightning creates a log folder for the run."""
        check = getattr(self.datamodule, "check", None)
        if check is not None:
            check(self.subcommand)

    before_validate = before_test = before_predict = _check_data

    def _run_subcommand(self, subcommand: str) -> None:
        """The subcommand, and the run folder's lock released however it ends."""
        self._lock: RunLock | None = None
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:  # Lightning's, in evaluation: exit as killed, not 0
            raise Stopped(128 + signal.SIGTERM) from None
        finally:
            if self._lock is not None:
                self._lock.release()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The configured trainer, writing checkpoints atomically unless a plugin says otherwise,
        and saving ``last.ckpt`` before it exits on SIGTERM or SIGINT (``StopOnSignal``)."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.insert(0, StopOnSignal())
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the checkpoint's hyperparameters here. ``--ckpt_path last`` becomes
        the newest ``last*.ckpt`` of the configured checkpoint folders (an error when there is
        none, instead of starting over), so that a resumed run uses its checkpoint's input
        pipeline like any other; a file that is not one of our checkpoints is refused by name."""
        name = self.config.get("subcommand")
        cfg = self.config[name] if name else None
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if ckpt == "last":
            cfg["ckpt_path"] = ckpt = str(_last_checkpoint(cfg))
        if ckpt and ckpt not in ("best", "hpc") and not str(ckpt).startswith("registry"):
            read_checkpoint(ckpt)
        before = _flat(cfg.get("model")) if cfg is not None else {}
        super()._parse_ckpt_path()
        after = _flat(self.config[name].get("model")) if cfg is not None else {}
        replaced = [f"model.{k} {before[k]!r} -> {after[k]!r}" for k in before  # None: linked
                    if k in after and before[k] is not None and before[k] != after[k]]
        if replaced:
            rank_zero_warn(f"{ckpt} sets the model's hyperparameters; these settings were "
                           f"replaced by the checkpoint's: {'; '.join(replaced)} (to change them, "
                           "start a new run)")

    def before_instantiate_classes(self) -> None:
        """Evaluating or resuming a checkpoint: use its input pipeline instead of building one."""
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if not ckpt or not os.path.isfile(ckpt):  # none, or "last" / "best"
            return
        if cfg.data.pipeline and InputPipeline.load(cfg.data.pipeline).to_dict() != \
                InputPipeline.load(ckpt).to_dict():
            raise ValueError(f"data.pipeline {cfg.data.pipeline} is not the input pipeline "
                             f"{ckpt} was trained with: leave it out to use the checkpoint's")
        cfg.data.pipeline = str(ckpt)


def _flat(namespace: Any) -> dict[str, Any]:
    """A config namespace as ``{"a.b.c": value}`` (its leaves, jsonargparse's own flattening)."""
    return dict(namespace.items()) if namespace is not None else {}


def _last_checkpoint(cfg: Any) -> Path:
    """The newest ``last*.ckpt`` in the run's checkpoint folders."""
    folders = list(dict.fromkeys(Path(cfg[k]["dirpath"]) for k in ("checkpoint", "last_checkpoint")
                                 if cfg.get(k) and cfg[k].get("dirpath")))
    found = [p for f in folders for p in f.glob("last*.ckpt")]
    if not found:
        raise FileNotFoundError(f"--ckpt_path last: no last*.ckpt in "
                                f"{[str(f) for f in folders] or 'any configured checkpoint folder'}"
                                "; start a new run without --ckpt_path")
    return max(found, key=lambda p: p.stat().st_mtime)


class _ConfigReader(VQACLI):
    """Parses and composes, instantiates nothing."""

    def instantiate_classes(self) -> None:
        pass


def read_config(configs: list[str]) -> Any:
    """The config ``vqa fit -c A -c B ...`` would run with (a jsonargparse ``Namespace``),
    composed by the same parser, without building the model, data or trainer."""
    from vqa.data.datamodule import VQADataModule
    from vqa.training.module import VQAModule

    args = [a for c in configs for a in ("-c", c)]
    with warnings.catch_warnings():  # called from another command: its own arguments differ
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _ConfigReader(VQAModule, VQADataModule, run=False, args=args,
                             parser_kwargs={"prog": "vqa check-data"}).config
