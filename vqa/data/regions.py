"""A resumable cache of region (box) features: a variable number of boxes per image.

Layout of a cache folder (rows in the order of ``index.json``'s ``ids``; K = ``max_boxes``):

* ``features.npy``: float16 (M, K, C), zero beyond each image's boxes; memory-mapped for reading.
* ``boxes.npy``: float32 (M, K, 4), each box ``(x1, y1, x2, y2)`` in pixels of the image.
* ``counts.npy``: int32 (M,), each image's number of boxes (at least 1, at most K).
* ``sizes.npy``: int32 (M, 2), each image's ``(width, height)`` in pixels.
* ``index.json``: format, where the features came from (``source``), K, C, the planned image ids
  and ``done``, the number of leading rows completely written.

Rows are written with positioned writes (nothing of the arrays is held in memory), flushed, and
only then counted in ``done`` (``index.json`` replaced atomically): a killed conversion resumes
at the first row not counted, and a reader never sees a row half written. Only each image's boxes
are written: the padding to K stays a hole of the sparse file, so disk use follows the real boxes
(a copy that does not keep holes takes the full M x K x C).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vqa._io import read_json, write_json
from vqa.data import features
from vqa.data.features import (
    CachedRows,
    FeatureCache,
    _missing,
    _open_array,
    array_header,
    check_features,
    finite,
)

FORMAT = "vqa-regions/1"
INDEX = "index.json"
ARRAYS = {"features": np.float16, "boxes": np.float32, "counts": np.int32, "sizes": np.int32}


@dataclass
class Regions:
    """One image's boxes: ``features`` (n, C), ``boxes`` (n, 4) ``(x1, y1, x2, y2)`` pixels, and the
    image's ``width`` and ``height``; ``where`` it was read (file and line or row, for errors)."""

    image_id: int | str
    features: np.ndarray
    boxes: np.ndarray
    width: int
    height: int
    where: str = ""

    def check(self, dim: int | None = None, max_boxes: int | None = None) -> None:
        """Raise, naming where the image was read, unless its arrays agree and are finite."""
        n = len(self.boxes)
        at = f"{self.where}: image {self.image_id}"
        if self.features.ndim != 2 or self.boxes.shape != (n, 4) or len(self.features) != n:
            raise ValueError(f"{at}: {len(self.features)} feature rows {self.features.shape} and "
                             f"boxes {self.boxes.shape} disagree (expected (n, C) and (n, 4))")
        if n == 0:
            raise ValueError(f"{at}: no boxes")
        if max_boxes is not None and n > max_boxes:
            raise ValueError(f"{at}: {n} boxes, more than max_boxes={max_boxes} (raise it; "
                             "boxes are never dropped)")
        if dim is not None and self.features.shape[1] != dim:
            raise ValueError(f"{at}: {self.features.shape[1]}-d features, the other images' are "
                             f"{dim}-d")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{at}: image size {self.width} x {self.height} is not positive")
        if not (np.isfinite(self.features).all() and np.isfinite(self.boxes).all()):
            raise ValueError(f"{at}: NaN or infinite values in its features or boxes")
        if np.abs(self.features).max() > 65504:
            raise ValueError(f"{at}: features beyond float16's range (|x| > 65504)")
        x1, y1, x2, y2 = self.boxes.T
        slack = 1.0  # detectors' boxes reach the last pixel's far edge, and some 1 px beyond
        bad = (x1 > x2) | (y1 > y2) | (x1 < -slack) | (y1 < -slack) | (x2 > self.width + slack) | (
            y2 > self.height + slack)
        if bad.any():
            b = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{at}: box {b} {self.boxes[b].tolist()} is not inside the "
                             f"{self.width} x {self.height} image with x1 <= x2, y1 <= y2")


class RegionCache(CachedRows):
    """Read side: ``cache[image_id]`` is that image's ``Regions`` (features float16).

    Arrays are opened lazily (memory-mapped), so a cache pickles into loader workers cheaply.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__(folder, read_index(Path(folder)))
        # C is known from the first image on (None in a cache no image reached yet)
        self.max_boxes, self.dim = int(self.meta["max_boxes"]), self.meta["dim"]
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The four arrays, memory-mapped; a file shorter than its header says is an error."""
        if self._arrays is None:
            self._arrays = {k: _open_array(self.folder / f"{k}.npy") for k in ARRAYS}
        return self._arrays

    def __getitem__(self, image_id: int | str) -> Regions:
        row = self.row.get(image_id)
        if row is None:
            raise KeyError(f"{self.folder}: image {image_id} is not in the region cache")
        a = self.arrays
        n = int(a["counts"][row])
        features = np.array(a["features"][row, :n])  # (n, C) float16, copied off the map
        if not finite(features):
            raise ValueError(f"region cache {self.folder}: image {image_id} (row {row}) has NaN "
                             f"or infinite features; `vqa check-features --cache {self.folder}` "
                             "lists every such row")
        width, height = (int(s) for s in a["sizes"][row])
        return Regions(image_id, features, np.array(a["boxes"][row, :n]), width, height,
                       f"{self.folder}: row {row}")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}


def is_region_cache(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a region cache (rather than a grid cache)."""
    index = Path(folder) / INDEX
    return index.is_file() and isinstance(m := read_json(index), dict) and m.get("format") == FORMAT


def open_cache(folder: str | os.PathLike) -> RegionCache | FeatureCache:
    """The cache in ``folder``, region or grid, as its index says."""
    return RegionCache(folder) if is_region_cache(folder) else FeatureCache(folder)


def read_index(folder: Path) -> dict[str, Any]:
    return features.read_index(folder, FORMAT, "region cache", "vqa convert-features")


def write_regions(out: str | os.PathLike, ids: list[int | str],
                  read: Callable[[int], Iterable[Regions]], source: dict[str, Any], max_boxes: int,
                  where: str = "", progress: bool = True, chunk: int = 64) -> RegionCache:
    """Write the images of ``ids``, in that order, into the cache ``out``, checking each
    (``Regions.check``; ``where`` names the source in other errors). ``read(start)`` gives them
    from row ``start`` on: 0 for a new cache, its first row not done when ``out`` was started
    before."""
    out = Path(out)
    meta = _resume_or_start(out, ids, source, max_boxes)
    done, dim = meta["done"], meta.get("dim")
    records = read(done)
    files = {k: open(out / f"{k}.npy", "r+b") for k in ARRAYS}  # noqa: SIM115 (closed below)
    try:
        offsets = {k: array_header(out / f"{k}.npy")[2] for k in ARRAYS}
        bar = tqdm(total=len(ids), initial=done, desc="converting features", unit="img",
                   disable=not progress)
        try:
            for rec in records:
                if done >= len(ids):
                    raise ValueError(f"{where}: more images than the {len(ids)} planned")
                if rec.image_id != ids[done]:
                    raise ValueError(f"{where}: image {rec.image_id} where image {ids[done]} "
                                     f"(row {done}) was expected: the source changed since the "
                                     "cache was started; use another --out folder")
                rec.check(dim, max_boxes)
                if dim is None:
                    dim = meta["dim"] = int(rec.features.shape[1])
                    _allocate(files, offsets, len(ids), max_boxes, dim)
                _write_row(files, offsets, done, rec, max_boxes, dim)
                done += 1
                bar.update(1)
                if done % chunk == 0:
                    _commit(out, files, meta, done)
        finally:  # an error (a bad image, a kill) keeps the rows written before it
            if dim is not None:
                _commit(out, files, meta, done)
            bar.close()
    finally:
        for f in files.values():
            f.close()
    if done != len(ids):
        raise ValueError(f"{where}: {done} of the {len(ids)} planned images were read")
    return RegionCache(out)


def _resume_or_start(out: Path, ids: list[int | str], source: dict[str, Any],
                     max_boxes: int) -> dict[str, Any]:
    if (out / INDEX).is_file():
        meta = read_index(out)
        if meta["source"] != source or meta["max_boxes"] != max_boxes:
            raise ValueError(f"{out / INDEX}: cache was started from {meta['source']} with "
                             f"max_boxes={meta['max_boxes']}, not {source} with "
                             f"max_boxes={max_boxes}; use another --out folder")
        if meta["ids"] != ids:
            raise ValueError(f"{out / INDEX}: cache was started for {len(meta['ids'])} other "
                             f"image ids; the source now has {len(ids)}")
        return meta
    out.mkdir(parents=True, exist_ok=True)
    for k, dtype in ARRAYS.items():  # placeholders until the feature size is known
        np.lib.format.open_memmap(out / f"{k}.npy", mode="w+", dtype=dtype, shape=(0,)).flush()
    meta = {"format": FORMAT, "source": source, "max_boxes": max_boxes, "dim": None,
            "ids": ids, "done": 0}
    write_json(out / INDEX, meta)
    return meta


def _allocate(files: dict[str, Any], offsets: dict[str, int], m: int, k: int,
              dim: int) -> None:
    """Write each array's header for its full shape and extend the file (sparse: zeros)."""
    shapes = {"features": (m, k, dim), "boxes": (m, k, 4), "counts": (m,), "sizes": (m, 2)}
    for name, dtype in ARRAYS.items():
        f = files[name]
        f.seek(0)
        f.truncate()
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": shapes[name]}
        np.lib.format.write_array_header_2_0(f, header)
        offsets[name] = f.tell()
        f.truncate(offsets[name] + int(np.prod(shapes[name])) * np.dtype(dtype).itemsize)


def _write_row(files: dict[str, Any], offsets: dict[str, int], row: int, rec: Regions, k: int,
               dim: int) -> None:
    """Row ``row``: the image's n boxes only; the padding beyond them stays a hole of the sparse
    file (zeros, no disk)."""
    values = {"features": (rec.features.astype(np.float16), k * dim * 2),
              "boxes": (rec.boxes.astype(np.float32), k * 4 * 4),
              "counts": (np.array([len(rec.boxes)], np.int32), 4),
              "sizes": (np.array([rec.width, rec.height], np.int32), 8)}
    for name, (value, row_bytes) in values.items():
        data = value.tobytes()
        if os.pwrite(files[name].fileno(), data, offsets[name] + row * row_bytes) != len(data):
            raise OSError(f"{files[name].name}: short write at row {row} (disk full?)")


def _commit(out: Path, files: dict[str, Any], meta: dict[str, Any], done: int) -> None:
    """Rows reach the disk before the index says they exist."""
    for f in files.values():
        os.fsync(f.fileno())
    meta["done"] = done
    write_json(out / INDEX, meta)


def check_regions(folder: str | os.PathLike, needed: Iterable[int | str] = (),
                  chunk: int = 256) -> list[str]:
    """Problems with a region cache (empty when sound): incomplete, arrays that disagree with the
    index, counts out of range, NaN or infinite values, or image ids in ``needed`` it lacks."""
    cache = RegionCache(folder)
    meta, problems, ids = cache.meta, [], cache.meta["ids"]
    if not cache.complete:
        problems.append(f"incomplete: {meta['done']} of {len(ids)} images converted (run the "
                        "same `vqa convert-features` again to resume)")
    if len(set(ids)) != len(ids):
        problems.append("image ids repeat in the index")
    if meta["done"] == 0:
        return [*problems, "no image converted yet", *_missing(needed, cache.row)]
    try:
        a = cache.arrays
    except ValueError as e:
        return [*problems, str(e)]
    m, k, c = len(ids), cache.max_boxes, cache.dim
    expected = {"features": (m, k, c), "boxes": (m, k, 4), "counts": (m,), "sizes": (m, 2)}
    for name, shape in expected.items():
        if a[name].shape != shape or a[name].dtype != ARRAYS[name]:
            problems.append(f"{name}.npy is {a[name].dtype} {a[name].shape}, the index says "
                            f"{np.dtype(ARRAYS[name])} {shape}")
    if problems:
        return problems
    counts = np.asarray(a["counts"][: meta["done"]])
    for r in np.flatnonzero((counts < 1) | (counts > k))[:5]:
        problems.append(f"image {ids[r]} (row {r}) has {counts[r]} boxes (expected 1 to {k})")
    for start in range(0, meta["done"], chunk):
        block = np.asarray(a["features"][start:start + chunk], np.float32)
        boxes = np.asarray(a["boxes"][start:start + chunk])
        bad = ~(np.isfinite(block).reshape(len(block), -1).all(1)
                & np.isfinite(boxes).reshape(len(boxes), -1).all(1))
        for r in np.flatnonzero(bad)[:5]:
            problems.append(f"image {ids[start + r]} (row {start + r}) has NaN or infinite values")
    sizes = np.asarray(a["sizes"][: meta["done"]])
    for r in np.flatnonzero((sizes <= 0).any(1))[:5]:
        problems.append(f"image {ids[r]} (row {r}) has size {sizes[r].tolist()}")
    return problems + _missing(needed, cache.row)


def check_caches(folders: Sequence[str | os.PathLike], needed: Iterable[int | str] = ()
                 ) -> list[str]:
    """Problems with grid or region caches read together (empty when sound), each checked as its
    kind (``check_features``, ``check_regions``), and image ids in ``needed`` none of them holds."""
    caches = [open_cache(f) for f in folders]
    problems = [f"{c.folder}: {p}" for c in caches for p in (
        check_regions(c.folder) if isinstance(c, RegionCache) else check_features(c.folder))]
    return problems + _missing(needed, set().union(*(c.row for c in caches)))
