"""Readers of the region-feature releases as they are distributed, one image at a time (never
the whole file in memory), for ``vqa convert-features``:

* ``tsv``: the bottom-up-attention TSV (Anderson et al. 2018): tab-separated ``image_id, image_w,
  image_h, num_boxes, boxes, features``, boxes (n, 4) and features (n, C) as base64 float32.
* ``hdf5``: bottom-up-attention-vqa's ``image_features`` (M, K, C), ``image_bb`` (M, K, 4) and
  ``spatial_features`` (M, K, 6), or ban-vqa's adaptive layout, the same flattened over boxes
  with ``pos_boxes`` (M, 2) ``[start, end)`` per image; either with its image-id-to-row pickle.
  These files hold no image size: it is recovered from ``spatial_features``, whose first four
  columns are the box corners over the image's width and height.
* ``npz``: OpenVQA / MCAN's one ``.npz`` per image: ``x`` (C, n) or (n, C), ``bbox`` (n, 4),
  ``image_w``, ``image_h``, ``num_bbox``.

Each reader gives the image ids in conversion order, and the images from a given row on.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vqa.data.features import IMAGE_SUFFIXES, image_id
from vqa.data.regions import Regions

TSV_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
FORMATS = ("tsv", "hdf5", "npz")


class Release:
    """One release on disk: ``ids`` in row order, ``read(start)`` the images from row ``start``,
    ``source`` what a cache records of it, ``where`` how errors name it."""

    ids: list[int | str]
    source: dict[str, Any]
    where: str

    def read(self, start: int = 0) -> Iterator[Regions]:
        raise NotImplementedError


def open_release(fmt: str, paths: Sequence[str | os.PathLike], ids_map: str | None = None,
                 naming: Literal["number", "name"] = "number") -> Release:
    """The release of format ``fmt`` (``tsv``: one or more files; ``hdf5``: one file and its
    ``ids_map`` pickle; ``npz``: one folder, images named by ``naming`` as in ``image_files``)."""
    if fmt == "tsv":
        return TsvRelease([Path(p) for p in paths])
    if len(paths) != 1:
        raise ValueError(f"--format {fmt} reads one {'file' if fmt == 'hdf5' else 'folder'}, "
                         f"not {len(paths)}")
    if fmt == "hdf5":
        if ids_map is None:
            raise ValueError("--format hdf5 needs --ids-map, the image-id-to-row pickle "
                             "distributed with the file (e.g. train36_imgid2idx.pkl)")
        return Hdf5Release(Path(paths[0]), Path(ids_map))
    if fmt == "npz":
        return NpzRelease(Path(paths[0]), naming)
    raise ValueError(f"unknown feature release format {fmt!r}; expected one of {FORMATS}")


def _image_id(text: str) -> int | str:
    return int(text) if re.fullmatch(r"-?\d+", text) else text


class TsvRelease(Release):
    """The bottom-up-attention TSV, one or more files (the 36-box release is one trainval file;
    the adaptive release four, ``karpathy_{train,val,test}_...tsv[.0/.1]``). Lines are read as
    bytes, whole: they are far longer than the ``csv`` module's field limit."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.where = paths, ", ".join(map(str, paths))
        self.source = {"format": "tsv", "files": [p.name for p in paths]}
        self.ids: list[int | str] = []
        seen: dict[int | str, str] = {}
        for path, line_no, line in self._lines_of_all():
            iid = _image_id(line.split(b"\t", 1)[0].decode("utf-8", "replace").strip())
            if iid in seen:
                raise ValueError(f"{path}:{line_no}: image {iid} again (first at {seen[iid]})")
            seen[iid] = f"{path}:{line_no}"
            self.ids.append(iid)

    def _lines_of_all(self) -> Iterator[tuple[Path, int, bytes]]:
        for path in self.paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: TSV file not found")
            with open(path, "rb") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        yield path, n, line

    def read(self, start: int = 0) -> Iterator[Regions]:
        for i, (path, n, line) in enumerate(self._lines_of_all()):
            if i >= start:
                yield parse_tsv_line(line, f"{path}:{n}")


def parse_tsv_line(line: bytes, where: str) -> Regions:
    """One TSV line -> ``Regions``; anything malformed names ``where`` (file:line)."""
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != len(TSV_FIELDS):
        raise ValueError(f"{where}: {len(fields)} tab-separated fields, expected "
                         f"{len(TSV_FIELDS)} ({', '.join(TSV_FIELDS)}): a truncated line?")
    iid = _image_id(fields[0].decode("utf-8", "replace").strip())
    try:
        w, h, n = (int(float(f)) for f in fields[1:4])
    except ValueError:
        raise ValueError(f"{where}: image {iid}: image_w, image_h, num_boxes must be numbers, "
                         f"got {[f[:20].decode('utf-8', 'replace') for f in fields[1:4]]}") from None
    boxes, features = (_base64_floats(f, name, where, iid) for name, f in
                       (("boxes", fields[4]), ("features", fields[5])))
    if n <= 0 or boxes.size != n * 4 or features.size % n:
        raise ValueError(f"{where}: image {iid}: num_boxes {n} disagrees with {boxes.size} box "
                         f"values (expected {n} x 4) and {features.size} feature values")
    return Regions(iid, features.reshape(n, -1), boxes.reshape(n, 4), w, h, where)


def _base64_floats(field: bytes, name: str, where: str, iid: int | str) -> np.ndarray:
    if field[:2] in (b"b'", b'b"'):  # written by Python 3 from bytes: b'...'
        field = field[2:-1]
    try:
        raw = base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{where}: image {iid}: {name} is not base64 ({e})") from None
    if len(raw) % 4:
        raise ValueError(f"{where}: image {iid}: {name} holds {len(raw)} bytes, not whole float32s")
    return np.frombuffer(raw, np.float32)


class _NoCode(pickle.Unpickler):
    """Unpickles plain data only: any global (a class or function to call) is refused, so a
    pickle cannot run code. NumPy integers are rebuilt from their bytes (which protocols 0-2
    and Python 2 pickles carry as latin-1 text)."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return _numpy_scalar
        if module == "numpy" and name == "dtype":
            return _numpy_dtype
        if module == "_codecs" and name == "encode":
            return _latin1
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the id map must be "
                                     "plain data (a dict of image id -> row)")


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("only latin-1 text is encoded while reading an id map")
    return text.encode("latin1")


def _numpy_scalar(dtype: np.dtype, data: bytes | str) -> int:
    data = data.encode("latin1") if isinstance(data, str) else data
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu" or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only integer numpy scalars are read from an id map")
    return int(np.frombuffer(data, dtype)[0])


def _numpy_dtype(name: str, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind not in "iu":
        raise pickle.UnpicklingError(f"only integer dtypes are read from an id map, not {name}")
    return dtype


def read_ids_map(path: Path) -> dict[int | str, int]:
    """The image-id-to-row pickle, read without running pickled code."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: id map not found")
    try:
        obj = _NoCode(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: {e}") from None
    except Exception as e:  # a damaged pickle raises anything
        raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, int) for v in obj.values()):
        raise ValueError(f"{path}: expected a dict of image id -> row number, got "
                         f"{type(obj).__name__}")
    rows: dict[int, int | str] = {}
    for iid, row in obj.items():
        if row in rows:
            raise ValueError(f"{path}: images {rows[row]} and {iid} both map to row {row}")
        rows[row] = iid
    return obj


class Hdf5Release(Release):
    """bottom-up-attention-vqa's HDF5 (fixed K boxes) or ban-vqa's (``pos_boxes``)."""

    def __init__(self, path: Path, ids_map: Path) -> None:
        import h5py

        if not path.is_file():
            raise FileNotFoundError(f"{path}: HDF5 file not found")
        self.path, self.where = path, str(path)
        rows = read_ids_map(ids_map)
        try:
            with h5py.File(path, "r") as f:
                missing = [k for k in ("image_features", "image_bb", "spatial_features") if k not in f]
                if missing:
                    raise ValueError(f"{path}: no dataset {missing[0]!r} (a bottom-up-attention-"
                                     f"vqa or ban-vqa feature file has image_features, image_bb, "
                                     f"spatial_features; it holds {sorted(f.keys())})")
                self.flat = "pos_boxes" in f
                if self.flat and (f["pos_boxes"].ndim != 2 or f["pos_boxes"].shape[1] != 2):
                    raise ValueError(f"{path}: pos_boxes is {f['pos_boxes'].shape}, expected "
                                     "(images, 2): each image's [start, end) box rows")
                n_rows = len(f["pos_boxes"] if self.flat else f["image_features"])
                self._check_shapes(f)
        except OSError as e:
            raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None
        for iid, row in rows.items():
            if not 0 <= row < n_rows:
                raise ValueError(f"{ids_map}: image {iid} maps to row {row}, but {path} has "
                                 f"{n_rows} images")
        self.ids = sorted(rows, key=rows.get)  # row order: sequential reads
        self.rows = [rows[i] for i in self.ids]
        self.source = {"format": "hdf5", "layout": "ban-vqa" if self.flat else
                       "bottom-up-attention-vqa", "file": path.name, "ids_map": ids_map.name}

    def _check_shapes(self, f: Any) -> None:
        feats, bb, sp = f["image_features"], f["image_bb"], f["spatial_features"]
        lead = feats.shape[:1] if self.flat else feats.shape[:2]
        if feats.ndim != len(lead) + 1 or bb.shape != (*lead, 4) or sp.shape != (*lead, 6):
            expected = "(boxes, C)" if self.flat else "(M, K, C)"
            raise ValueError(f"{self.path}: image_features {feats.shape}, image_bb {bb.shape} and "
                             f"spatial_features {sp.shape} disagree (expected {expected}, "
                             "(..., 4), (..., 6))")

    def read(self, start: int = 0) -> Iterator[Regions]:
        import h5py

        with h5py.File(self.path, "r") as f:
            feats, bb, sp = f["image_features"], f["image_bb"], f["spatial_features"]
            pos = f["pos_boxes"] if self.flat else None
            for iid, row in zip(self.ids[start:], self.rows[start:], strict=True):
                where = f"{self.path}: row {row}"
                if pos is not None:
                    a, b = (int(x) for x in pos[row])
                    if not 0 <= a < b <= len(feats):
                        raise ValueError(f"{where}: image {iid}: pos_boxes [{a}, {b}) is not a "
                                         f"non-empty range of the {len(feats)} boxes")
                    sl: Any = slice(a, b)
                    x, boxes, spatial = feats[sl], bb[sl], sp[sl]
                else:
                    x, boxes, spatial = feats[row], bb[row], sp[row]
                w, h = _image_size(np.asarray(boxes, np.float32), np.asarray(spatial, np.float32),
                                   where, iid)
                yield Regions(iid, np.asarray(x, np.float32), np.asarray(boxes, np.float32), w, h,
                              where)


def _image_size(boxes: np.ndarray, spatial: np.ndarray, where: str, iid: int | str
                ) -> tuple[int, int]:
    """(width, height) from boxes in pixels and the same corners over the image size."""
    size = []
    for pixel, scaled, name in ((boxes[:, 2], spatial[:, 2], "width"),
                                (boxes[:, 3], spatial[:, 3], "height")):
        j = int(np.argmax(scaled))
        if not np.isfinite(scaled[j]) or scaled[j] <= 0:
            raise ValueError(f"{where}: image {iid}: spatial_features give no image {name} "
                             "(no box with a positive scaled corner)")
        size.append(round(float(pixel[j] / scaled[j])))
    return size[0], size[1]


class NpzRelease(Release):
    """A folder of OpenVQA / MCAN ``.npz`` files, one per image (``COCO_val2014_000000000042.jpg.npz``:
    image 42). ``x`` is read whichever way round it is stored, by its length ``num_bbox``; when
    both sides equal it, OpenVQA's (C, n) is assumed."""

    def __init__(self, folder: Path, naming: Literal["number", "name"]) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: folder of .npz files not found")
        self.folder, self.where = folder, str(folder)
        files: dict[int | str, Path] = {}
        for path in sorted(folder.glob("*.npz")):
            stem = Path(path.stem)  # COCO_val2014_000000000042.jpg.npz -> ...042.jpg -> ...042
            stem = stem.stem if stem.suffix.lower() in IMAGE_SUFFIXES else stem.name
            iid = image_id(stem, naming)
            if iid is None:
                raise ValueError(f"{path}: no image id at the end of the file name")
            if iid in files:
                raise ValueError(f"{path}: image {iid} also comes from {files[iid]}")
            files[iid] = path
        if not files:
            raise FileNotFoundError(f"{folder}: no .npz files")
        self.ids, self.files = sorted(files, key=str), files
        self.source = {"format": "npz", "folder": folder.name}

    def read(self, start: int = 0) -> Iterator[Regions]:
        for iid in self.ids[start:]:
            yield read_npz(self.files[iid], iid)


def read_npz(path: Path, iid: int | str) -> Regions:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "bbox", "image_w", "image_h", "num_bbox") if k not in z]
            if missing:
                raise ValueError(f"{path}: no {missing[0]!r} (an OpenVQA feature file has x, bbox, "
                                 f"image_w, image_h, num_bbox; it holds {sorted(z.files)})")
            x, boxes = np.asarray(z["x"], np.float32), np.asarray(z["bbox"], np.float32)
            n, w, h = int(z["num_bbox"]), int(z["image_w"]), int(z["image_h"])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    if x.ndim == 2 and x.shape[0] == n and x.shape[1] != n:
        features = x
    elif x.ndim == 2 and x.shape[1] == n:
        features = x.T
    else:
        raise ValueError(f"{path}: image {iid}: x {x.shape} has no side of num_bbox={n}")
    if len(boxes) != n:
        raise ValueError(f"{path}: image {iid}: bbox {boxes.shape} disagrees with num_bbox={n}")
    return Regions(iid, features, boxes, w, h, str(path))
