"""Dataset formats: one module per dataset, each defining ``FORMAT``, a ``DataFormat``.

A format says how a release's files are read into ``Example``s, how its answers are scored
(``vqa.data.scoring``), how its results file is written and read, and how its images are named.
Every module of this package that defines ``FORMAT`` is found on first use: adding a dataset is
adding a module here (and a config), nothing else. A module elsewhere works too: a split's
``format`` may name it (``mylab.datasets.foo``).
"""

from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module
from pathlib import Path

from vqa._io import read_json
from vqa.data.format import DataFormat


@cache
def formats() -> dict[str, DataFormat]:
    """Every ``DataFormat`` of this package, by name."""
    out: dict[str, DataFormat] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        fmt = getattr(import_module(f"{__name__}.{info.name}"), "FORMAT", None)
        if isinstance(fmt, DataFormat):
            out[fmt.name] = fmt
    return out


def get_format(name: str) -> DataFormat:
    """The format called ``name``, or the ``FORMAT`` of the module ``name`` (a dataset kept
    outside this package: ``format: mylab.datasets.foo``); else an error listing the known ones."""
    known = formats()
    if name in known:
        return known[name]
    try:
        fmt = getattr(import_module(name), "FORMAT", None)
    except ModuleNotFoundError as e:  # the module itself is missing, not one it imports
        if e.name is None or not name.startswith(e.name):
            raise
        fmt = None
    if not isinstance(fmt, DataFormat):
        raise ValueError(f"unknown dataset format {name!r}; expected one of {sorted(known)}, or "
                         "an importable module that defines FORMAT = DataFormat(...)")
    return fmt


def detect_format(questions: str | Path, annotations: str | Path | None = None) -> DataFormat:
    """The format of a questions file (or COCO-QA folder), recognised from its content."""
    data = None if Path(questions).is_dir() else read_json(questions)
    found = [f for f in formats().values() if f.detect(data, annotations)]
    refined = {f.refines for f in found}
    found = [f for f in found if f.name not in refined]
    if len(found) != 1:
        what = "no known format" if not found else f"several formats ({[f.name for f in found]})"
        raise ValueError(f"{questions}: {what} matches this file; name it with --dataset "
                         f"(one of {sorted(formats())})")
    return found[0]
