"""``vqa check-data -c CONFIG``: can the data a config names be used as configured?

For every split of the config's ``data`` (train, val, test, predict; a list is one split) it reads
the files as training would (every format rule of ``vqa.data.datasets``), decodes every image (or
checks the feature cache: complete, finite, holding every image), and checks that answer types
are known. It lists every problem with its file and id, prints a summary, and tells whether the
data can be used. The configs are read by ``vqa fit``'s own parser.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from vqa.data.example import ANSWER_TYPES, Example, image_path
from vqa.data.regions import check_caches
from vqa.data.split import Split

SPLITS = ("train", "val", "test", "predict")


@dataclass
class Report:
    """What one split holds and what is wrong with it."""

    name: str
    questions: int = 0
    images: int = 0
    answers: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "ok" if not self.problems else f"{len(self.problems)} problem(s)"
        return (f"{self.name:<8} {self.questions:>8} questions {self.images:>7} images "
                f"{self.answers:>9} answers   {status}")


def read_config(configs: Iterable[str | os.PathLike]) -> dict[str, list[Split]]:
    """The splits of one or more config files, composed exactly as ``vqa fit`` composes them
    (the same parser: nested files, overlays, interpolation), without building anything."""
    from vqa.training.lightning_cli import read_config as compose

    data = compose([str(c) for c in configs])["data"]
    return {name: [p if isinstance(p, Split) else Split(**vars(p)) for p in
                   (data[name] if isinstance(data[name], list) else [data[name]])]
            for name in SPLITS if data.get(name)}


def check_image(path: Path) -> str | None:
    """A problem with one image file, or ``None`` when it decodes."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))  # JPEGs decode at a reduced scale: fast, still complete
            img.load()
    except FileNotFoundError:
        return f"{path}: image not found"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"{path}: cannot decode the image ({type(e).__name__}: {e})"
    return None


def check_split(name: str, parts: list[Split], workers: int = 8) -> Report:
    """Read a split as training would and check its images or feature caches."""
    report = Report(name)
    seen: set[int] = set()
    for part in parts:
        try:
            examples, subtype = part.load()
        except (ValueError, FileNotFoundError) as e:
            report.problems.append(str(e))
            continue
        repeated = seen.intersection(ex.question_id for ex in examples)
        if repeated:
            report.problems.append(f"{part.questions}: question ids {sorted(repeated)[:5]} also "
                                   "appear in an earlier part of the same split")
        seen.update(ex.question_id for ex in examples)
        report.questions += len(examples)
        report.answers += sum(len(ex.answers) for ex in examples)
        report.problems += unknown_answer_types(part, examples)
        ids = {ex.image_id for ex in examples}
        report.images += len(ids)
        if part.boxes:
            report.problems += _check_boxes(part.boxes, ids)
        if part.features:
            try:
                report.problems += check_caches(part.feature_caches, ids)
            except (ValueError, FileNotFoundError) as e:
                report.problems.append(str(e))
        else:
            paths = sorted({image_path(ex, part.images or ".", part.image_template, subtype)
                            for ex in examples})
            with ThreadPoolExecutor(workers) as pool:  # decoding releases the GIL
                found = pool.map(check_image, paths)
                report.problems += [p for p in tqdm(found, total=len(paths), unit="img",
                                                    desc=f"{name} images") if p]
    return report


def unknown_answer_types(part: Split, examples: list[Example]) -> list[str]:
    """Annotated VQA questions whose ``answer_type`` is not one the metrics know."""
    if part.format not in ("vqa", "vqacp") or part.annotations is None:
        return []
    bad = [ex for ex in examples if ex.answer_type not in ANSWER_TYPES]
    return [f"{part.annotations}: question_id {ex.question_id} has answer_type "
            f"{ex.answer_type!r}, expected one of {list(ANSWER_TYPES)}" for ex in bad[:20]] + (
        [f"{part.annotations}: ... and {len(bad) - 20} more with unknown answer types"]
        if len(bad) > 20 else [])


def check_data(configs: list[str], workers: int = 8) -> list[Report]:
    """A report for every split the configs name."""
    reports = [check_split(name, parts, workers) for name, parts in read_config(configs).items()]
    if not reports:
        raise ValueError(f"{', '.join(configs)}: no data splits (data.train, data.val, ...)")
    return reports


def _check_boxes(path: str, ids: set[int | str]) -> list[str]:
    """Problems with a split's boxes file: malformed, or images of the questions it lacks."""
    from vqa.data.boxes import read_boxes

    try:
        boxes = read_boxes(path)
    except (ValueError, FileNotFoundError) as e:
        return [str(e)]
    missing = sorted(ids - set(boxes), key=str)
    return [f"{path}: no boxes for {len(missing)} image(s) of the questions, e.g. "
            f"{missing[:5]}"] if missing else []
