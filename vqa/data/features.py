"""A resumable cache of image grid features from a frozen torchvision backbone.

Layout of a cache folder:

* ``features.npy``: float16 array (M, N, C), memory-mappable (``np.load(mmap_mode="r")``); row ``i``
  holds the N = h x w grid regions (row-major) of the ``i``-th planned image.
* ``index.json``: format, backbone settings, grid size, the planned image ids (numbers, or file
  stems for datasets that name images: ``image_files``) in row order and
  ``done``, the number of leading rows already written.

Extraction writes a batch of rows, flushes them, and only then advances ``done`` by replacing
``index.json`` atomically; killed at any point, a restart rewrites at most the batch in flight
and never lists a row that was not completely written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from vqa._io import read_json, write_json

if TYPE_CHECKING:  # torch is imported where it is used: `vqa check-features` starts without it
    import torch

FORMAT = "vqa-features/1"
# How extraction orients images, recorded in a cache's settings (caches without it read JPEGs
# as stored, ignoring EXIF orientation).
ORIENTATION = "exif"
INDEX, ARRAY = "index.json", "features.npy"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_id(stem: str, ids: Literal["number", "name"] = "number") -> int | str | None:
    """The image id a file stem names: ``number``, the number ending it (``None`` without one);
    ``name``, the stem itself."""
    if ids == "name":
        return stem
    m = re.search(r"(\d+)$", stem)
    return int(m.group(1)) if m else None


def image_files(folder: str | os.PathLike, ids: Literal["number", "name"] = "number"
                ) -> dict[int | str, Path]:
    """Image id -> file for the images of a folder. ``number``: the number that ends the file
    name (``COCO_val2014_000000000042.jpg`` -> 42: VQA, VQA-CP, OK-VQA, COCO-QA); ``name``: the
    file name's stem (``n161313.jpg`` -> ``"n161313"``: GQA, VizWiz, CLEVR)."""
    if ids not in ("number", "name"):
        raise ValueError(f"unknown image naming {ids!r}; expected 'number' or 'name'")
    out: dict[int | str, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        iid = image_id(path.stem, ids)
        if iid is None:
            raise ValueError(f"{path}: no image id at the end of the file name (use --ids name "
                             "for datasets that name images otherwise)")
        if iid in out:
            raise ValueError(f"{path}: image id {iid} also belongs to {out[iid]}")
        out[iid] = path
    if not out:
        raise FileNotFoundError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images found")
    return out


class CachedRows:
    """What grid and region caches share: their folder, its index (``meta``) and the row of each
    image already written (``row``)."""

    def __init__(self, folder: str | os.PathLike, meta: dict[str, Any]) -> None:
        self.folder, self.meta = Path(folder), meta
        self.row = {iid: i for i, iid in enumerate(meta["ids"][: meta["done"]])}

    @property
    def complete(self) -> bool:
        return self.meta["done"] == len(self.meta["ids"])

    def __len__(self) -> int:
        return len(self.row)

    def __contains__(self, image_id: int | str) -> bool:
        return image_id in self.row


class FeatureCache(CachedRows):
    """Read side of a cache: ``cache[image_id]`` is the (N, C) float16 tensor of that image.

    The array is opened lazily, so a cache can be pickled into data-loader workers cheaply.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__(folder, read_index(Path(folder)))
        self.shape: tuple[int, int] = tuple(self.meta["shape"])  # (N, C)
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """(M, N, C) float16, memory-mapped; a file shorter than its header says is an error."""
        if self._array is None:
            self._array = _open_array(self.folder / ARRAY)
        return self._array

    def __getitem__(self, image_id: int | str) -> torch.Tensor:
        import torch

        row = self.row.get(image_id)
        if row is None:
            raise KeyError(f"{self.folder}: image {image_id} is not in the feature cache")
        features = np.array(self.array[row])  # (N, C) float16, copied off the map
        if not finite(features):
            raise ValueError(f"feature cache {self.folder}: image {image_id} (row {row}) has NaN "
                             "or infinite features; `vqa check-features --cache "
                             f"{self.folder}` lists every such row")
        return torch.from_numpy(features)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}


def finite(features: np.ndarray) -> bool:
    """Whether a float16 array holds no NaN or infinity: no exponent field is all ones, tested
    on the bits (about 3x faster than ``np.isfinite`` on float16; ``scripts/bench.py`` reports
    the cost per batch)."""
    return bool((features.view(np.uint16) & 0x7FFF).max(initial=0) < 0x7C00)


def array_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """A ``.npy`` file's shape, dtype and the offset of its data."""
    with open(path, "rb") as f:
        try:
            header = (np.lib.format.read_array_header_1_0
                      if np.lib.format.read_magic(f) == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = header(f)
        except ValueError as e:
            raise ValueError(f"{path}: not a numpy array file ({e})") from None
        return shape, dtype, f.tell()


def _open_array(path: Path) -> np.ndarray:
    """``np.load(path, mmap_mode="r")``; a file cut short is named as truncated."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: feature array not found")
    shape, dtype, offset = array_header(path)
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise ValueError(f"{path}: truncated: {size} bytes, its header says {expected} "
                         f"({dtype} {shape}); copy it again, or extract the cache again")
    return np.load(path, mmap_mode="r")


def read_index(folder: Path, fmt: str = FORMAT, kind: str = "feature cache",
               command: str = "vqa extract-features") -> dict[str, Any]:
    """A cache's ``index.json``, checked to be of format ``fmt`` (a ``kind`` made by ``command``)."""
    index = folder / INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{index}: no {kind} here (run `{command}`)")
    meta = read_json(index)
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{index}: not a {kind} index (expected format {fmt!r})")
    return meta


def extract_features(images: dict[int | str, Path], out: str | os.PathLike, encoder: torch.nn.Module,
                     settings: dict[str, Any], image_size: int, batch_size: int = 32,
                     num_workers: int = 0, device: str = "auto", progress: bool = True
                     ) -> FeatureCache:
    """Run ``encoder`` (images (B, 3, S, S) -> regions (B, N, C)) over ``images`` into ``out``.

    ``settings`` (backbone name, weights, layer, image size) are stored in the index; resuming
    with other settings or another image set is an error. On a GPU the backbone runs under
    bfloat16/float16 autocast; features are stored as float16 either way.
    """
    import torch
    from torch.utils.data import DataLoader

    from vqa.data.pipeline import normalize_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**settings, "orientation": ORIENTATION}
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ids = sorted(images)  # all numbers or all names
    encoder = encoder.to(device).eval().requires_grad_(False)
    meta = _resume_or_start(out, ids, settings, encoder, image_size, device)
    array = np.load(out / ARRAY, mmap_mode="r+")
    done = meta["done"]
    loader = DataLoader(_ImageList([images[i] for i in ids[done:]], image_size), batch_size,
                        num_workers=num_workers)
    autocast = torch.autocast("cuda", torch.float16) if device.startswith("cuda") else nullcontext()
    bar = tqdm(total=len(ids), initial=done, desc="extracting features", unit="img",
               disable=not progress)
    with torch.inference_mode(), autocast:
        for raw in loader:
            x = normalize_image(raw.to(device, non_blocking=True))  # (B, 3, S, S)
            feats = encoder(x).float()  # (B, N, C)
            array[done:done + len(raw)] = feats.clamp(-65504, 65504).half().cpu().numpy()
            array.flush()  # rows reach the file before the index says they exist
            done += len(raw)
            write_json(out / INDEX, {**meta, "done": done})
            bar.update(len(raw))
    bar.close()
    del array
    return FeatureCache(out)


class _ImageList:
    """Image files as (3, S, S) uint8 tensors, for a ``DataLoader``."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from vqa.data.pipeline import load_image

        return load_image(self.paths[i], (self.size, self.size))  # (3, S, S) uint8


def _resume_or_start(out: Path, ids: list[int | str], settings: dict[str, Any], encoder: torch.nn.Module,
                     image_size: int, device: str) -> dict[str, Any]:
    if (out / INDEX).is_file():
        meta = read_index(out)
        if "orientation" not in meta["settings"]:
            raise ValueError(f"{out / INDEX}: cache was started before images were read upright "
                             "(EXIF orientation); use another --out folder")
        if meta["settings"] != settings:
            raise ValueError(f"{out / INDEX}: cache was started with {meta['settings']}, "
                             f"not {settings}; use another --out folder")
        if meta["ids"] != ids:
            raise ValueError(f"{out / INDEX}: cache was started for {len(meta['ids'])} other "
                             f"image ids; the folder now has {len(ids)}")
        if meta["done"] > 0 or (out / ARRAY).is_file():
            return meta
    import torch

    with torch.inference_mode():
        probe = encoder(torch.zeros(1, 3, image_size, image_size, device=device))  # (1, N, C)
    shape = list(probe.shape[1:])
    grid = list(encoder.grid((image_size, image_size)) if hasattr(encoder, "grid")
                else (round(shape[0] ** 0.5),) * 2)
    np.lib.format.open_memmap(out / ARRAY, mode="w+", dtype=np.float16,
                              shape=(len(ids), *shape)).flush()
    meta = {"format": FORMAT, "settings": settings, "shape": shape, "grid": grid,
            "ids": ids, "done": 0}
    write_json(out / INDEX, meta)
    return meta


def check_features(folder: str | os.PathLike | Sequence[str | os.PathLike],
                   needed: Iterable[int | str] = (), chunk: int = 256) -> list[str]:
    """Problems with a grid cache, or several read together (empty when sound): incomplete, wrong
    shape or dtype, repeated ids, NaN or infinite values, or image ids in ``needed`` that none of
    them holds (``vqa.data.regions.check_caches`` checks region caches too)."""
    if not isinstance(folder, str | os.PathLike):
        caches = [FeatureCache(f) for f in folder]
        problems = [f"{c.folder}: {p}" for c in caches for p in check_features(c.folder, (), chunk)]
        return problems + _missing(needed, set().union(*(c.row for c in caches)))
    cache = FeatureCache(folder)
    meta, problems = cache.meta, []
    ids = meta["ids"]
    if not cache.complete:
        problems.append(f"incomplete: {meta['done']} of {len(ids)} images extracted "
                        "(run the same `vqa extract-features` again to resume)")
    if len(set(ids)) != len(ids):
        problems.append("image ids repeat in the index")
    try:
        array = cache.array
    except ValueError as e:  # truncated, not an array
        return [*problems, str(e)]
    if array.dtype != np.float16 or array.shape != (len(ids), *cache.shape):
        problems.append(f"array is {array.dtype} {array.shape}, index says float16 "
                        f"{(len(ids), *cache.shape)}")
        return problems
    for start in range(0, meta["done"], chunk):
        block = np.asarray(array[start:start + chunk], np.float32)
        bad = ~np.isfinite(block).reshape(len(block), -1).all(1)
        for r in np.flatnonzero(bad)[:5]:
            problems.append(f"image {ids[start + r]} (row {start + r}) has NaN or infinite values")
    return problems + _missing(needed, cache.row.keys())


def naming_hint(cached: Iterable[int | str], naming: str, dataset: str) -> str:
    """A hint when a cache names images otherwise than the dataset does (``""`` when alike)."""
    kinds = {type(i) for i in cached}
    if (naming == "name" and int in kinds) or (naming == "number" and str in kinds):
        return (f" (the cache names images by {'number' if int in kinds else 'file name'}, "
                f"{dataset} by {naming}: extract with --ids {naming})")
    return ""


def _missing(needed: Iterable[int | str], cached: Iterable[int | str]) -> list[str]:
    missing = sorted(set(needed) - set(cached), key=str)
    if not missing:
        return []
    return [f"{len(missing)} image(s) needed by the questions are not cached, e.g. {missing[:5]}"]
