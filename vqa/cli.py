"""The ``vqa`` command: LightningCLI subcommands plus dataset and evaluation tools.

    vqa fit|validate|test|predict -c configs/...yaml   (LightningCLI)
    vqa make-shapes --out DIR --train N --val M --seed S
    vqa evaluate --questions Q.json [--annotations A.json] --results R.json [--dataset NAME]
    vqa extract-features --images DIR --out CACHE [--name resnet152 --weights ... --layer layer4]
                         [--boxes BOXES.json | --detector fasterrcnn_resnet50_fpn]
    vqa convert-features --format tsv|hdf5|npz --source FILE... --out CACHE [--ids-map PKL]
    vqa check-features --cache CACHE [--questions Q.json ...]
    vqa check-data -c CONFIG [-c OVERLAY ...]
    vqa attend --ckpt CKPT --image IMG --question "..." [--out attention.png]
    vqa compare --questions Q [--annotations A] --a R1.json [R2.json ...] --b S1.json [...]
    vqa ensemble -c CONFIG [-c OVERLAY] --probabilities P1.npz P2.npz [...] --out R.json
"""

from __future__ import annotations

import argparse
import errno
import netrc
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from vqa._io import atomic_save

if TYPE_CHECKING:  # Lightning is imported by the subcommands that train: the tools start fast
    from pytorch_lightning.cli import LightningCLI

LIGHTNING = {
    "fit": "train a model (-c CONFIG.yaml ...; resume with --ckpt_path last)",
    "validate": "score a checkpoint on the val split (--ckpt_path CKPT)",
    "test": "score a checkpoint on the test split (--ckpt_path CKPT)",
    "predict": "answer the predict split and write the official results file (--ckpt_path CKPT)",
}
TOOLS = {
    "make-shapes": "generate the shapes dataset in the VQA v2 format",
    "evaluate": "score a results file as the dataset's benchmark does (VQA, GQA, VizWiz, ...)",
    "extract-features": "cache the grid (or box) features of an image folder (resumable)",
    "convert-features": "convert a region-feature release (TSV, HDF5, .npz) into a region cache",
    "check-features": "verify a feature or region cache (and that it holds the images of some questions)",
    "check-data": "check every split a config names: files, ids, answers, images, feature caches",
    "attend": "answer a question about an image and draw where each level attended",
    "compare": "compare two systems (results files; seeds: several) with a bootstrap interval",
    "ensemble": "average saved answer probabilities of several models into one results file",
    "study": "train configs x overlays x seeds (resumable; or SLURM / W&B sweep) and tabulate",
}
# OS errors a user can act on, printed as one line naming the path.
OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG,
             errno.ENOENT, errno.EISDIR, errno.ENOTDIR}
USAGE = "\n".join([
    "usage: vqa COMMAND [options]      (vqa COMMAND --help: the command's options)", "",
    "Training and evaluation (LightningCLI; every config key is an option):",
    *(f"  {name:<18}{text}" for name, text in LIGHTNING.items()), "", "Tools:",
    *(f"  {name:<18}{text}" for name, text in TOOLS.items()), "",
    "Errors print one line; set VQA_DEBUG=1 for the traceback."])


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
    from vqa.benchmark import evaluate_files, format_table
    from vqa.data.datasets import formats

    p = argparse.ArgumentParser(prog="vqa evaluate", description="Score a results file as the "
                                "dataset's own benchmark scores it (recognised from the files).")
    p.add_argument("--questions", required=True, help="questions file (VizWiz, GQA, CLEVR: the "
                   "annotated file; COCO-QA: the split folder)")
    p.add_argument("--annotations", help="annotations file (VQA, VQA-CP, OK-VQA)")
    p.add_argument("--results", required=True, help="results file in the benchmark's format")
    p.add_argument("--dataset", help=f"the dataset format: {', '.join(sorted(formats()))} or a "
                   "module defining FORMAT (default: recognised from the files)")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--version", choices=("current", "2016"), default="current",
                   help="VQA evaluation release to reproduce (default: current)")
    a = p.parse_args(argv)
    metrics = evaluate_files(a.questions, a.annotations, a.results, a.dataset, a.version)
    print(format_table(metrics))
    if a.out:
        write_json(a.out, metrics, indent=2)
        print(f"metrics written to {a.out}")


def extract_features(*, images: str, out: str, name: str = "resnet152", weights: str | None = None,
                     layer: str = "layer4", image_size: int = 448, batch_size: int = 32,
                     num_workers: int = 2, device: str = "auto",
                     ids: Literal["number", "name"] = "number", boxes: str | None = None,
                     detector: str | None = None, detector_weights: str | None = None,
                     max_boxes: int = 100, min_boxes: int = 10, min_score: float = 0.2,
                     roi_size: int = 2) -> None:
    """Cache the grid features of every image in a folder (resumable: run it again after a kill),
    or, with ``boxes`` or ``detector``, region features: the grid pooled by RoIAlign in each box.

    Args:
        images: folder of images.
        out: cache folder (``features.npy`` + ``index.json``).
        name: torchvision model name (``resnet152`` in the paper).
        weights: torchvision weights name (``IMAGENET1K_V1``) or a local state-dict file.
        layer: graph node giving the grid (``layer4``: 14 x 14 x 2048 at 448 px).
        image_size: images are resized to this square side.
        batch_size: images per forward pass.
        num_workers: image-decoding processes.
        device: ``auto`` (GPU when present, with float16 autocast), ``cpu`` or ``cuda[:i]``.
        ids: how images are named in the cache: ``number`` (the number ending the file name:
            COCO ids, for VQA, VQA-CP, OK-VQA, COCO-QA) or ``name`` (the file name's stem: GQA,
            VizWiz, CLEVR).
        boxes: a boxes file (``vqa.data.boxes``) of each image's boxes: region features.
        detector: a torchvision detection model proposing the boxes instead
            (``fasterrcnn_resnet50_fpn``), with ``detector_weights`` (a torchvision weights name
            or a local state dict); ``min_score``, ``min_boxes`` and ``max_boxes`` pick its
            detections as the bottom-up features' adaptive 10-100 rule does.
        max_boxes: boxes per image at most (region features).
        roi_size: RoIAlign bins per side, averaged (region features).
    """
    from vqa.data.features import extract_features as extract
    from vqa.data.features import image_files
    from vqa.models.image import BoxEncoder, TorchvisionEncoder

    encoder = TorchvisionEncoder(name, weights, layer, frozen=True)
    settings = {"name": name, "weights": weights, "layer": layer, "image_size": image_size}
    if boxes is not None or detector is not None:
        from vqa.data.boxes import read_boxes
        from vqa.data.region_extraction import extract_regions, load_detector

        source = {"format": "extract", **settings, "roi_size": roi_size,
                  "boxes": Path(boxes).name if boxes else None, "detector": detector,
                  "detector_weights": detector_weights, "min_boxes": min_boxes,
                  "min_score": min_score}
        cache = extract_regions(
            image_files(images, ids), out, BoxEncoder(encoder, roi_size), source, image_size,
            max_boxes, read_boxes(boxes) if boxes else None,
            load_detector(detector, detector_weights) if detector else None, min_boxes,
            min_score, batch_size, device)
        print(f"{len(cache)} images cached in {out}: up to {cache.max_boxes} boxes x {cache.dim} "
              "float16 features each")
        return
    cache = extract(image_files(images, ids), out, encoder, settings, image_size, batch_size,
                    num_workers, device)
    print(f"{len(cache)} images cached in {out}: {cache.shape[0]} regions x {cache.shape[1]} "
          "float16 features each")


def extract_features_main(argv: list[str]) -> None:
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="vqa extract-features",
                       description=extract_features.__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML file of these options")
    p.add_function_arguments(extract_features)
    check_config_files(argv)
    options = p.parse_args(argv).as_dict()
    options.pop("config", None)
    extract_features(**options)


def convert_features_main(argv: list[str]) -> None:
    from vqa.data.regions import write_regions
    from vqa.data.releases import FORMATS, open_release

    p = argparse.ArgumentParser(prog="vqa convert-features", description="Convert a region-feature "
                                "release into a region cache (resumable: run it again after a kill).")
    p.add_argument("--format", required=True, choices=FORMATS, help="tsv: bottom-up-attention; "
                   "hdf5: bottom-up-attention-vqa or ban-vqa (recognised); npz: OpenVQA / MCAN")
    p.add_argument("--source", required=True, nargs="+", help="the TSV file(s), the HDF5 file, or "
                   "the folder of .npz files")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--ids-map", help="hdf5: the image-id-to-row pickle (read as plain data only)")
    p.add_argument("--max-boxes", type=int, default=100, help="boxes per image at most (default "
                   "100; an image with more is an error, never cut)")
    p.add_argument("--ids", choices=("number", "name"), default="number", help="npz: image id from "
                   "the number ending the file name (COCO) or the whole name")
    p.add_argument("--questions", nargs="*", default=[], help="questions files whose images the "
                   "release must hold (checked before converting)")
    p.add_argument("--dataset", help="the questions' format (default: recognised from each file)")
    a = p.parse_args(argv)
    release = open_release(a.format, a.source, a.ids_map, a.ids)
    missing = sorted(_question_images(a.questions, a.dataset) - set(release.ids), key=str)
    if missing:
        raise ValueError(f"{release.where}: {len(missing)} image(s) of the questions are not in "
                         f"the release, e.g. {missing[:5]}")
    cache = write_regions(a.out, release.ids, release.read, release.source, a.max_boxes,
                          release.where)
    print(f"{len(cache)} images in {a.out}: up to {cache.max_boxes} boxes x {cache.dim} float16 "
          "features each")


def _question_images(questions: list[str], dataset: str | None) -> set[int | str]:
    """The image ids of some questions files (formats recognised unless ``dataset`` names one)."""
    from vqa.data.datasets import detect_format, get_format

    return {ex.image_id for q in questions
            for ex in (get_format(dataset) if dataset else detect_format(q)).read(q, None)[0]}


def check_features_main(argv: list[str]) -> None:
    from vqa.data.datasets import detect_format, formats, get_format
    from vqa.data.features import naming_hint
    from vqa.data.regions import RegionCache, check_caches, open_cache

    p = argparse.ArgumentParser(prog="vqa check-features", description="Verify feature caches "
                                "(read together, as a split's list of caches is).")
    p.add_argument("--cache", required=True, nargs="+", help="cache folder(s)")
    p.add_argument("--questions", nargs="*", default=[], help="questions files (or COCO-QA split "
                   "folders) of any dataset, whose images must be cached")
    p.add_argument("--dataset", help=f"the questions' format: {', '.join(sorted(formats()))} or "
                   "a module defining FORMAT (default: recognised from each file)")
    a = p.parse_args(argv)
    caches = {folder: open_cache(folder) for folder in a.cache}
    cached = [i for cache in caches.values() for i in cache.row]
    needed: set[int | str] = set()
    hint = ""
    for q in a.questions:
        fmt = get_format(a.dataset) if a.dataset else detect_format(q)
        needed.update(ex.image_id for ex in fmt.read(q, None)[0])
        hint = hint or naming_hint(cached, fmt.image_ids, fmt.name)
    problems = check_caches(a.cache, needed)
    if problems and hint:  # the last problem is the missing images
        problems[-1] += hint
    for folder, cache in caches.items():
        if isinstance(cache, RegionCache):
            print(f"{folder}: {len(cache)} images, up to {cache.max_boxes} boxes x {cache.dim} "
                  f"features, float16; from {cache.meta['source']}")
            continue
        print(f"{folder}: {len(cache)} images, {cache.shape[0]} regions (grid "
              f"{'x'.join(map(str, cache.meta['grid']))}) x {cache.shape[1]} features, float16; "
              f"settings {cache.meta['settings']}")
    if problems:
        sys.exit("check failed:\n  " + "\n  ".join(problems))
    print("ok" + (f": all {len(needed)} images of the questions are cached" if needed else ""))


def check_config_files(argv: list[str]) -> None:
    """Read each YAML file given with ``-c``/``--config`` in ``argv``: a syntax error names the
    file, line and column (jsonargparse names no file, and counts lines of the merged text); a
    top-level ``optimizer`` or ``lr_scheduler`` key, where Lightning's own CLI would take one,
    names its file and the key to use instead."""
    from itertools import pairwise

    import yaml

    given = [b for a, b in pairwise(argv) if a in ("-c", "--config")]
    given += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in (f for f in given if Path(f).is_file()):  # else: YAML text, or a missing file
        try:
            config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: byte {e.start}: not UTF-8 text ({e.reason})") from None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
            tab = " (YAML does not allow tabs for indentation)" if "\\t" in str(e.problem) else ""
            raise ValueError(f"{path}:{where} {e.problem or e.context}{tab}") from None
        for key, instead in (("optimizer", "optimizer"), ("lr_scheduler", "scheduler")):
            if isinstance(config, dict) and key in config:
                raise ValueError(f"{path}: top-level key {key!r}: the optimiser and its schedule "
                                 f"are the model's, set `model: {instead}: ...` instead")


def check_data_main(argv: list[str]) -> None:
    from vqa.check_data import check_data

    p = argparse.ArgumentParser(prog="vqa check-data", description="Check that the data a config "
                                "names can be used: every split's files, ids, answers, images or "
                                "feature caches. Exits 1 when there is a problem.")
    p.add_argument("-c", "--config", action="append", required=True,
                   help="a config file; repeat to layer overlays, as for `vqa fit`")
    p.add_argument("--workers", type=int, default=8, help="image-decoding threads")
    a = p.parse_args(argv)
    check_config_files(argv)
    reports = check_data(a.config, a.workers)
    for r in reports:
        for problem in r.problems:
            print(f"  {r.name}: {problem}")
    print("\n".join(r.line() for r in reports))
    problems = sum(len(r.problems) for r in reports)
    if problems:
        sys.exit(f"error: {problems} problem(s): the data cannot be used as configured")
    print("ok: the data can be used as configured")


def attend_main(argv: list[str]) -> None:
    from vqa.inspector import (
        CutQuestionWarning,
        Inspector,
        UnknownWordsWarning,
        cut_question_message,
        unknown_words_message,
    )

    p = argparse.ArgumentParser(prog="vqa attend", description="Answer a question about an image "
                                "and draw where each co-attention level looked.")
    p.add_argument("--ckpt", required=True, help="a checkpoint of `vqa fit`")
    p.add_argument("--image", required=True, help="an image file")
    p.add_argument("--question", required=True, help="free text")
    p.add_argument("--out", default="attention.png", help="the PNG figure to write")
    p.add_argument("--top", type=int, default=5, help="how many answers to print")
    p.add_argument("--boxes", help="a boxes file holding the image's boxes (models over boxes): "
                   "the entry whose image id ends the image's file name, or its only entry")
    a = p.parse_args(argv)
    if not Path(a.image).is_file():
        raise FileNotFoundError(f"{a.image}: image not found")
    boxes = _image_boxes(a.boxes, Path(a.image)) if a.boxes else None
    with warnings.catch_warnings():
        for said_below in (UnknownWordsWarning, CutQuestionWarning):  # once, as one line
            warnings.simplefilter("ignore", said_below)
        answer = Inspector.from_checkpoint(a.ckpt).ask(a.image, a.question, a.top, boxes)
    if not answer.known:
        print(f"warning: {unknown_words_message(a.question)}", file=sys.stderr)
    if answer.tokens > answer.read:
        print(f"warning: {cut_question_message(answer.tokens, answer.read)}", file=sys.stderr)
    print(f"Q: {a.question}")
    for i, (text, prob) in enumerate(answer.top, 1):
        print(f"  {i}. {text:<20} {prob:.3f}")
    fig = answer.figure()
    atomic_save(a.out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    print(f"attention figure written to {a.out}")


def _image_boxes(path: str, image: Path):  # -> np.ndarray (N, 4) pixels
    """The boxes of ``image`` in boxes file ``path``."""
    from vqa.data.boxes import read_boxes
    from vqa.data.features import image_id

    boxes = read_boxes(path)
    keys = (image_id(image.stem), image.stem)
    for key in keys:
        if key in boxes:
            return boxes[key].boxes
    if len(boxes) == 1:
        return next(iter(boxes.values())).boxes
    raise ValueError(f"{path}: no boxes for image {image.name} (looked for image id "
                     f"{' or '.join(repr(k) for k in keys if k is not None)})")


def study_main(argv: list[str]) -> None:
    from vqa.experiments import study as st
    from vqa.experiments.table import write_tables

    argv, fit_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    p = argparse.ArgumentParser(prog="vqa study", description=st.__doc__.split("\n\n")[0],
                                epilog="Arguments after -- go to every `vqa fit`.")
    p.add_argument("--out", required=True, help="the study's folder (runs, tables, study.json)")
    p.add_argument("--configs", nargs="+", help="experiment configs (a new study; later "
                   "commands on --out read its study.json)")
    p.add_argument("--overlays", nargs="+", default=[st.BASE],
                   help=f"overlays compared on each config ('{st.BASE}': the config alone)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--name", help="the study's name, its W&B group (default: --out's name)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one GPU each when there "
                   "are several)")
    p.add_argument("--task", type=int, help="run only run number TASK (a SLURM or sweep task)")
    p.add_argument("--table", action="store_true", help="only gather the table of finished runs")
    p.add_argument("--slurm", action="store_true", help="write a SLURM job-array script "
                   "instead of running")
    p.add_argument("--sbatch", nargs="*", default=[], metavar="KEY=VALUE",
                   help="its #SBATCH options, e.g. gres=gpu:1 time=4:00:00")
    p.add_argument("--wandb-sweep", action="store_true", help="write a W&B sweep file instead "
                   "of running")
    p.add_argument("--dry-run", action="store_true", help="print the runs' commands")
    a = p.parse_args(argv)
    out = Path(a.out)
    if a.configs:
        study = st.Study(a.name or out.name, a.configs, a.overlays, a.seeds, fit_args)
        if (out / "study.json").is_file() and st.Study.load(out) != study:
            raise ValueError(f"{out / 'study.json'} holds another study; give the same "
                             "arguments to resume it, or another --out")
        for f in {*a.configs, *(o for o in a.overlays if o != st.BASE)}:
            if not Path(f).is_file():
                raise FileNotFoundError(f"{f}: config not found")
        study.save(out)
    else:
        study = st.Study.load(out)
    runs = study.runs()
    if a.dry_run:
        for r in runs:
            print(f"{r.index}: [{st.state(r, out)}] vqa {shlex.join(st.command(study, r, out))}")
        return
    if a.slurm:
        st.write_text(out / "study.sbatch", st.slurm_script(study, out,
                                                            [f"--{o}" for o in a.sbatch]))
        print(f"wrote {out / 'study.sbatch'} ({len(runs)} tasks): sbatch {out / 'study.sbatch'}")
        return
    if a.wandb_sweep:
        import yaml

        st.write_text(out / "sweep.yaml", yaml.safe_dump(st.wandb_sweep(study, out),
                                                         sort_keys=False))
        print(f"wrote {out / 'sweep.yaml'} ({len(runs)} runs): wandb sweep {out / 'sweep.yaml'}, "
              "then wandb agent SWEEP_ID")
        return
    if a.task is not None and not 0 <= a.task < len(runs):
        raise ValueError(f"--task {a.task}: the study has runs 0 to {len(runs) - 1}")
    failures = [] if a.table else st.execute(study, out, a.jobs,
                                             None if a.task is None else [a.task])
    if a.task is None:
        header = (f"Study `{study.name}`: `vqa study --out {out} --configs "
                  f"{' '.join(study.configs)} --overlays {' '.join(study.overlays)} --seeds "
                  f"{' '.join(map(str, study.seeds))}`"
                  + (f" `-- {shlex.join(study.args)}`" if study.args else "")
                  + f", gathered {time.strftime('%Y-%m-%d %H:%M')}. Validation metrics of each "
                  "run's best epoch: mean ± sample standard deviation over the n seeds that "
                  "finished.\n\n")
        write_tables(runs, out, header)
        print((out / "table.md").read_text())
    if failures:
        raise ValueError(f"{len(failures)} run(s) failed: " + "; ".join(failures))


def compare_main(argv: list[str]) -> None:
    from vqa._io import write_json
    from vqa.data.datasets import formats
    from vqa.experiments.compare import compare, format_comparison

    p = argparse.ArgumentParser(prog="vqa compare", description="Compare two systems on the same "
                                "questions, each scored as the dataset's benchmark scores it: "
                                "accuracies, B - A with a 95%% paired-bootstrap interval, the "
                                "questions only one gets right, and the difference per category.")
    p.add_argument("--questions", required=True, help="questions file (as for `vqa evaluate`)")
    p.add_argument("--annotations", help="annotations file (VQA, VQA-CP, OK-VQA)")
    p.add_argument("--a", required=True, nargs="+", metavar="RESULTS",
                   help="system A: a results file, or several (seeds: a question's score is "
                        "the mean over them)")
    p.add_argument("--b", required=True, nargs="+", metavar="RESULTS", help="system B, likewise")
    p.add_argument("--dataset", help=f"the dataset format: {', '.join(sorted(formats()))} "
                   "(default: recognised from the files)")
    p.add_argument("--version", choices=("current", "2016"), default="current",
                   help="VQA evaluation release to reproduce (default: current)")
    p.add_argument("--samples", type=int, default=10000, help="bootstrap samples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", help="write the comparison JSON here (every disagreeing question id)")
    a = p.parse_args(argv)
    result = compare(a.questions, a.annotations, a.a, a.b, a.dataset, a.version, a.samples, a.seed)
    print(format_comparison(result))
    if a.out:
        write_json(a.out, result, indent=2)
        print(f"comparison written to {a.out}")


def ensemble_main(argv: list[str]) -> None:
    from vqa.benchmark import format_table
    from vqa.experiments.ensemble import ensemble

    p = argparse.ArgumentParser(prog="vqa ensemble", description="Average the answer "
                                "probabilities several models saved for a config's predict split "
                                "(`vqa predict ... --results.probabilities true`) and write the "
                                "ensemble's results file; an annotated split is scored.")
    p.add_argument("-c", "--config", action="append", required=True,
                   help="the config whose predict split the members answered; repeat to layer "
                        "overlays, as for `vqa predict`")
    p.add_argument("--probabilities", required=True, nargs="+", metavar="NPZ",
                   help="the members' probabilities_{split}.npz files")
    p.add_argument("--out", required=True, help="the ensemble's results file (JSON)")
    p.add_argument("--pipeline", help="a member's checkpoint (or pipeline.json) whose answer "
                   "vocabulary to use (default: the config's data.pipeline, or built from its "
                   "training split as `vqa fit` builds it)")
    a = p.parse_args(argv)
    check_config_files(argv)
    result = ensemble(a.config, a.probabilities, a.out, a.pipeline)
    print(f"ensemble of {len(a.probabilities)} models written to {a.out}")
    if not result["metrics"]:
        print("the predict split has no annotations (or joins several files): not scored")
    for name, metrics in result["metrics"].items():
        print(f"{'ensemble' if name == 'ensemble' else 'member ' + name}: {format_table(metrics)}")
    if result["metrics"]:
        overall = {k: m["overall"] for k, m in result["metrics"].items()}
        ensembled = overall.pop("ensemble")
        print(f"overall: ensemble {ensembled:.2f}; members "
              + ", ".join(f"{v:.2f}" for v in overall.values()))


def wandb_offline_unless_logged_in(timeout: float = 3.0) -> None:
    """W&B runs stay offline (no account needed; `wandb sync` uploads them later) unless the user
    has logged in (`wandb login` or WANDB_API_KEY) or chose a mode with WANDB_MODE. A login whose
    server cannot be reached within ``timeout`` seconds also logs offline, said in one line
    (W&B itself would wait 90 s, then fail the run)."""
    if "WANDB_MODE" in os.environ:
        return
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or \
            netrc.netrc().authenticators(host.hostname or "api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    if logged_in and not reachable(host.hostname or "", host.port or
                                   (80 if host.scheme == "http" else 443), timeout):
        print(f"W&B: {host.geturl()} cannot be reached; logging offline (`wandb sync "
              "RUN/wandb/offline-run-*` uploads a run later)", file=sys.stderr)
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"


def reachable(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup
    included, which has no timeout of its own: it runs in a thread that is not waited for)."""
    import socket
    import threading

    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def quiet_start() -> None:
    """No start-up lines a user cannot act on: Lightning's advertising tip and a deprecation
    warning its own code triggers inside torch (the W&B ones: ``vqa.training.WandbLogger``)."""
    import logging

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda r: not str(r.msg).startswith("💡 Tip"))


def main(argv: list[str] | None = None) -> None:
    """The ``vqa`` command (``argv``: its arguments, default ``sys.argv[1:]``). Errors that name
    their cause (bad input, a refused run) print one ``error:`` line and exit 1; ``VQA_DEBUG=1``
    shows the traceback instead."""
    try:
        run(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        if os.environ.get("VQA_DEBUG"):
            raise
        sys.exit(f"error: {_cause(e)}")
    except OSError as e:  # no space left, permission denied, read-only file system...
        if os.environ.get("VQA_DEBUG") or e.errno not in OS_ERRORS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        sys.exit(f"error: {where}{e.strerror or e} (files written before are intact)")


def _cause(error: Exception) -> str:
    """The error's message; for one re-raised from a data-loader worker ("Caught ValueError in
    DataLoader worker process 0. Original Traceback ..."), the original message only."""
    text = str(error)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def run(argv: list[str] | None = None) -> LightningCLI | None:
    """Run a command; the Lightning subcommands return their ``LightningCLI`` (its ``model``,
    ``datamodule`` and ``trainer``), the tools ``None``."""
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return None
    if argv[0] in TOOLS:
        {"make-shapes": make_shapes_main, "evaluate": evaluate_main,
         "extract-features": extract_features_main, "convert-features": convert_features_main,
         "check-features": check_features_main,
         "check-data": check_data_main, "attend": attend_main, "study": study_main,
         "compare": compare_main, "ensemble": ensemble_main}[argv[0]](argv[1:])
        return None
    if argv[0] not in LIGHTNING:
        raise ValueError(f"unknown command {argv[0]!r}; `vqa --help` lists them")
    wandb_offline_unless_logged_in()
    from vqa.data.datamodule import VQADataModule
    from vqa.training.lightning_cli import VQACLI
    from vqa.training.module import VQAModule

    quiet_start()
    check_config_files(argv)
    return VQACLI(VQAModule, VQADataModule, args=None if from_shell else argv,
                  parser_kwargs={"description": __doc__})


if __name__ == "__main__":
    main()
