"""``vqa check-data -c CONFIG``: can the data a config names be used as configured?

For every split of the config's ``data`` (train, val, test, predict; a list is one split) it reads
the files as training would (every format rule of ``vqa.data.datasets``), decodes every image (or
checks the feature cache: complete, finite, holding every image), and checks that answer types
are known. It lists every problem with its file and id, prints a summary, and tells whether the
data can be used. No torch and no Lightning: it starts at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from PIL import Image
from tqdm import tqdm

from vqa.data.example import ANSWER_TYPES, Example, image_path
from vqa.data.features import check_features
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


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``-c a.yaml -c b.yaml``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def read_config(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The ``data`` section of one or more config files, merged in order."""
    config: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: config not found")
        with open(path) as f:
            try:
                loaded = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        config = merge(config, loaded)
    data = config.get("data", {})
    if "init_args" in data:  # data: {class_path: ..., init_args: {...}}
        data = data["init_args"]
    return data


def split_parts(name: str, value: Any) -> list[Split]:
    """A config's split (a mapping or a list of them) as ``Split`` objects."""
    known = {f.name for f in fields(Split)}
    parts = []
    for item in value if isinstance(value, list) else [value]:
        unknown = set(item) - known if isinstance(item, dict) else set()
        if not isinstance(item, dict) or unknown or "questions" not in item:
            raise ValueError(f"data.{name}: expected a split with 'questions' (and {sorted(known)}),"
                             f" got {item!r}")
        parts.append(Split(**item))
    return parts


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
        if part.features:
            try:
                report.problems += check_features(part.feature_caches, ids)
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
    data = read_config(configs)
    reports = [check_split(name, split_parts(name, data[name]), workers)
               for name in SPLITS if data.get(name)]
    if not reports:
        raise ValueError(f"{', '.join(configs)}: no data splits (data.train, data.val, ...)")
    return reports
