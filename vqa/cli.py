"""The ``vqa`` command: LightningCLI subcommands plus dataset and evaluation tools.

    vqa fit|validate|test|predict -c configs/...yaml   (LightningCLI)
    vqa make-shapes --out DIR --train N --val M --seed S
    vqa evaluate --questions Q.json --annotations A.json --results R.json [--out metrics.json]
"""

from __future__ import annotations

import argparse
import sys

from pytorch_lightning.cli import LightningCLI

from vqa.data.datamodule import VQADataModule
from vqa.training.module import VQAModule

TOOLS = ("make-shapes", "evaluate")


class VQACLI(LightningCLI):
    """Links data-defined sizes into the model and evaluates checkpoints with their own vocabulary."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.question_vocab_size", "model.model.init_args.vocab_size",
                              apply_on="instantiate")
        parser.link_arguments("data.answer_vocab_size", "model.model.init_args.num_answers",
                              apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        # Evaluating a checkpoint: read its vocabularies instead of rebuilding them from data.
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        if cfg is not None and cfg.get("ckpt_path") and not cfg.data.vocab:
            cfg.data.vocab = str(cfg.ckpt_path)


def make_shapes_main(argv: list[str]) -> None:
    from vqa.data.shapes import make_shapes

    p = argparse.ArgumentParser(prog="vqa make-shapes",
                                description="Generate the shapes dataset in the VQA v2 format.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=20000, help="training questions")
    p.add_argument("--val", type=int, default=2000, help="validation questions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--questions-per-image", type=int, default=5)
    a = p.parse_args(argv)
    make_shapes(a.out, a.train, a.val, a.seed, a.image_size, a.questions_per_image)
    print(f"shapes dataset written to {a.out}")


def evaluate_main(argv: list[str]) -> None:
    from vqa._io import write_json
    from vqa.evaluation import evaluate, format_table

    p = argparse.ArgumentParser(prog="vqa evaluate",
                                description="Official VQA accuracy of a results file.")
    p.add_argument("--questions", required=True)
    p.add_argument("--annotations", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--version", choices=("current", "2016"), default="current",
                   help="official evaluation release to reproduce (default: current)")
    a = p.parse_args(argv)
    metrics = evaluate(a.questions, a.annotations, a.results, a.version)
    print(format_table(metrics))
    if a.out:
        write_json(a.out, metrics, indent=2)
        print(f"metrics written to {a.out}")


def main(argv: list[str] | None = None) -> None:
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        try:
            {"make-shapes": make_shapes_main, "evaluate": evaluate_main}[argv[0]](argv[1:])
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
        return
    VQACLI(VQAModule, VQADataModule, args=None if from_shell else argv,
           save_config_kwargs={"overwrite": True},
           parser_kwargs={"description": __doc__})


if __name__ == "__main__":
    main()
