"""Region features: each release layout (bottom-up-attention TSV, bottom-up-attention-vqa and
ban-vqa HDF5, OpenVQA .npz) written as distributed, converted and read back; malformed files
with located errors; a resumed conversion; every mechanism over padded boxes; a fit on boxes."""

import base64
import csv
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import shapes_split
from test_mechanisms import MECHANISMS, A, D, V

from vqa.cli import main, run
from vqa.data.batch import collate
from vqa.data.dataset import CachedFeatures
from vqa.data.regions import RegionCache, check_regions
from vqa.data.shapes import QUESTIONS_FILE
from vqa.models import VQAModel

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["image_id", "image_w", "image_h", "num_boxes", "boxes", "features"]


def images(n: int = 5, dim: int = 16, seed: int = 0, ids: list[int] | None = None) -> list[dict]:
    """``n`` images with 1 to 7 boxes inside their (varied) sizes and float32 features."""
    rng = np.random.default_rng(seed)
    out = []
    for i, iid in enumerate(ids or [9 + 7 * k for k in range(n)]):
        w, h, k = int(rng.integers(200, 640)), int(rng.integers(200, 640)), 1 + i % 7
        x1, y1 = rng.uniform(0, w / 2, k), rng.uniform(0, h / 2, k)
        boxes = np.stack([x1, y1, x1 + rng.uniform(1, w / 2, k), y1 + rng.uniform(1, h / 2, k)], 1)
        out.append({"image_id": iid, "w": w, "h": h, "boxes": boxes.astype(np.float32),
                    "features": rng.normal(0, 3, (k, dim)).astype(np.float32)})
    return out


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()


def write_tsv(path: Path, imgs: list[dict]) -> Path:
    """As bottom-up-attention's generate_tsv.py writes it (csv.DictWriter, tab, CRLF)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, delimiter="\t", fieldnames=FIELDS)
        for m in imgs:
            writer.writerow({"image_id": m["image_id"], "image_w": m["w"], "image_h": m["h"],
                             "num_boxes": len(m["boxes"]), "boxes": b64(m["boxes"]),
                             "features": b64(m["features"])})
    return path


def spatial(m: dict) -> np.ndarray:
    """bottom-up-attention-vqa's spatial_features: corners over the image size, width, height."""
    b, s = m["boxes"], np.array([m["w"], m["h"]] * 2, np.float32)
    scaled = b / s
    return np.concatenate([scaled, scaled[:, 2:] - scaled[:, :2]], 1).astype(np.float32)


def write_bua_hdf5(folder: Path, imgs: list[dict]) -> tuple[Path, Path]:
    """detection_features_converter.py's layout: (M, K, ...) arrays, fixed K, and the id map."""
    k = max(len(m["boxes"]) for m in imgs)
    imgs = [{**m, "boxes": np.resize(m["boxes"], (k, 4)), "features": np.resize(
        m["features"], (k, m["features"].shape[1]))} for m in imgs]
    with h5py.File(folder / "train36.hdf5", "w") as f:
        f.create_dataset("image_features", data=np.stack([m["features"] for m in imgs]))
        f.create_dataset("image_bb", data=np.stack([m["boxes"] for m in imgs]))
        f.create_dataset("spatial_features", data=np.stack([spatial(m) for m in imgs]))
    rows = {m["image_id"]: r for r, m in enumerate(imgs)}
    (folder / "train36_imgid2idx.pkl").write_bytes(pickle.dumps(rows, protocol=2))
    return folder / "train36.hdf5", folder / "train36_imgid2idx.pkl"


def write_ban_hdf5(folder: Path, imgs: list[dict]) -> tuple[Path, Path]:
    """ban-vqa's adaptive layout: boxes flattened, ``pos_boxes`` [start, end) per image."""
    counts = [len(m["boxes"]) for m in imgs]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    with h5py.File(folder / "train.hdf5", "w") as f:
        f.create_dataset("image_features", data=np.concatenate([m["features"] for m in imgs]))
        f.create_dataset("image_bb", data=np.concatenate([m["boxes"] for m in imgs]))
        f.create_dataset("spatial_features", data=np.concatenate([spatial(m) for m in imgs]))
        f.create_dataset("pos_boxes", data=np.stack([starts, starts + counts], 1))
    rows = {m["image_id"]: r for r, m in enumerate(imgs)}
    (folder / "train_imgid2idx.pkl").write_bytes(pickle.dumps(rows, protocol=2))
    return folder / "train.hdf5", folder / "train_imgid2idx.pkl"


def write_npz(folder: Path, imgs: list[dict]) -> Path:
    """OpenVQA / MCAN: one file per image; ``x`` as (C, n) for some, (n, C) for others."""
    folder.mkdir(exist_ok=True)
    for i, m in enumerate(imgs):
        x = m["features"].T if i % 2 == 0 else m["features"]
        np.savez(folder / f"COCO_train2014_{m['image_id']:012d}.jpg.npz", x=x, bbox=m["boxes"],
                 image_w=m["w"], image_h=m["h"], num_bbox=len(m["boxes"]))
    return folder


def write_release(layout: str, folder: Path, imgs: list[dict]) -> list[str]:
    """The release in ``folder``; the `vqa convert-features` arguments that read it."""
    if layout == "tsv":
        return ["--format", "tsv", "--source", str(write_tsv(folder / "feat.tsv", imgs))]
    if layout == "npz":
        return ["--format", "npz", "--source", str(write_npz(folder / "npz", imgs))]
    h5, ids = (write_bua_hdf5 if layout == "bua" else write_ban_hdf5)(folder, imgs)
    return ["--format", "hdf5", "--source", str(h5), "--ids-map", str(ids)]


def convert(args: list[str], out: Path, *more: str) -> RegionCache:
    main(["convert-features", *args, "--out", str(out), *more])
    return RegionCache(out)


@pytest.mark.parametrize("layout", ["tsv", "bua", "ban", "npz"])
def test_each_release_converts_to_its_values(tmp_path: Path, layout: str) -> None:
    imgs = images()
    if layout == "bua":  # a fixed number of boxes per image
        imgs = [{**m, "boxes": np.resize(m["boxes"], (7, 4)),
                 "features": np.resize(m["features"], (7, 16))} for m in imgs]
    cache = convert(write_release(layout, tmp_path, imgs), tmp_path / "cache", "--max-boxes", "8")
    assert cache.complete and len(cache) == len(imgs) and cache.dim == 16
    assert not check_regions(tmp_path / "cache", [m["image_id"] for m in imgs])
    for m in imgs:
        r = cache[m["image_id"]]
        assert r.features.dtype == np.float16 and len(r.boxes) == len(m["boxes"])
        np.testing.assert_allclose(r.features, m["features"], rtol=1e-3, atol=1e-3)
        if layout in ("bua", "ban"):  # corners recovered from the scaled corners: float32
            np.testing.assert_allclose(r.boxes, m["boxes"], rtol=1e-6)
        else:
            np.testing.assert_array_equal(r.boxes, m["boxes"])
        assert (r.width, r.height) == (m["w"], m["h"])


def test_a_tsv_line_longer_than_csv_allows(tmp_path: Path) -> None:
    """36 boxes of 2048-d features: a 393,294-character line (csv's field limit is 131,072)."""
    imgs = images(2, dim=2048)
    imgs[1] = {**imgs[1], "boxes": np.resize(imgs[1]["boxes"], (36, 4)),
               "features": np.resize(imgs[1]["features"], (36, 2048))}
    path = write_tsv(tmp_path / "long.tsv", imgs)
    assert max(len(line) for line in path.read_text().splitlines()) > 131_072
    cache = convert(["--format", "tsv", "--source", str(path)], tmp_path / "cache")
    np.testing.assert_allclose(cache[imgs[1]["image_id"]].features, imgs[1]["features"], rtol=1e-3,
                               atol=1e-3)
    assert cache.max_boxes == 100 and len(cache[imgs[1]["image_id"]].boxes) == 36


def test_a_python3_written_tsv_reads_too(tmp_path: Path) -> None:
    """generate_tsv.py run under Python 3 writes base64 fields as ``b'...'``."""
    imgs = images(2)
    path = write_tsv(tmp_path / "f.tsv", imgs)
    lines = path.read_text().splitlines()
    fields = [line.split("\t") for line in lines]
    path.write_text("\n".join("\t".join([*f[:4], f"b'{f[4]}'", f"b'{f[5]}'"]) for f in fields))
    cache = convert(["--format", "tsv", "--source", str(path)], tmp_path / "cache")
    np.testing.assert_array_equal(cache[imgs[0]["image_id"]].boxes, imgs[0]["boxes"])


def _tsv_line(path: Path, line: int, edit) -> None:
    lines = path.read_bytes().decode().split("\r\n")
    fields = lines[line - 1].split("\t")
    lines[line - 1] = "\t".join(edit(fields))
    path.write_bytes("\r\n".join(lines).encode())


def _malformed_tsv(tmp_path: Path, edit, line: int = 3) -> list[str]:
    path = write_tsv(tmp_path / "bad.tsv", images())
    _tsv_line(path, line, edit)
    return ["--format", "tsv", "--source", str(path)]


def _h5_edit(tmp_path: Path, layout: str, edit) -> list[str]:
    h5, ids = (write_bua_hdf5 if layout == "bua" else write_ban_hdf5)(tmp_path, images())
    edit(h5, ids)
    return ["--format", "hdf5", "--source", str(h5), "--ids-map", str(ids)]


def _set(h5: Path, name: str, index, value) -> None:
    with h5py.File(h5, "r+") as f:
        f[name][index] = value


def _drop(h5: Path, name: str) -> None:
    with h5py.File(h5, "r+") as f:
        del f[name]


def _replace(h5: Path, name: str, value: np.ndarray) -> None:
    _drop(h5, name)
    with h5py.File(h5, "r+") as f:
        f.create_dataset(name, data=value)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


MALFORMED = {
    "tsv truncated line": (lambda t: _malformed_tsv(t, lambda f: [*f[:4], f[4][:40]]),
                           "bad.tsv:3: 5 tab-separated fields, expected 6"),
    "tsv not base64": (lambda t: _malformed_tsv(t, lambda f: [*f[:5], "!!" + f[5][2:]]),
                       "bad.tsv:3: image 23: features is not base64"),
    "tsv box count disagrees": (lambda t: _malformed_tsv(t, lambda f: [*f[:3], "7", *f[4:]]),
                                "bad.tsv:3: image 23: num_boxes 7 disagrees with 12 box values"),
    "tsv size not a number": (lambda t: _malformed_tsv(t, lambda f: [f[0], "wide", *f[2:]]),
                              "bad.tsv:3: image 23: image_w, image_h, num_boxes must be numbers"),
    "tsv NaN": (lambda t: _malformed_tsv(t, lambda f: [*f[:5], b64(np.full((3, 16), np.nan))]),
                "bad.tsv:3: image 23: NaN or infinite values"),
    "tsv duplicate image": (lambda t: _malformed_tsv(t, lambda f: ["9", *f[1:]], line=4),
                            "bad.tsv:4: image 9 again (first at "),
    "tsv features of another size": (
        lambda t: _malformed_tsv(t, lambda f: [*f[:5], b64(np.zeros((3, 8)))]),
        "bad.tsv:3: image 23: 8-d features, the other images' are 16-d"),
    "tsv box outside the image": (
        lambda t: _malformed_tsv(t, lambda f: [*f[:4], b64(np.array([[0, 0, 5000, 10]] * 3)), f[5]]),
        "bad.tsv:3: image 23: box 0 [0.0, 0.0, 5000.0, 10.0] is not inside"),
    "tsv more boxes than max": (lambda t: [*_malformed_tsv(t, lambda f: f), "--max-boxes", "2"],
                                "bad.tsv:3: image 23: 3 boxes, more than max_boxes=2"),
    "hdf5 dataset missing": (lambda t: _h5_edit(t, "bua", lambda h5, _: _drop(h5, "image_bb")),
                             "train36.hdf5: no dataset 'image_bb'"),
    "hdf5 id map row out of range": (
        lambda t: _h5_edit(t, "bua", lambda _, ids: ids.write_bytes(pickle.dumps({9: 0, 16: 99}))),
        "train36_imgid2idx.pkl: image 16 maps to row 99, but "),
    "hdf5 id map runs code": (
        lambda t: _h5_edit(t, "bua", lambda _, ids: ids.write_bytes(pickle.dumps({9: _Evil()}))),
        "train36_imgid2idx.pkl: refusing to load builtins.print"),
    "hdf5 two images one row": (
        lambda t: _h5_edit(t, "bua", lambda _, ids: ids.write_bytes(pickle.dumps({9: 0, 16: 0}))),
        "train36_imgid2idx.pkl: images 9 and 16 both map to row 0"),
    "ban-vqa pos_boxes past the end": (
        lambda t: _h5_edit(t, "ban", lambda h5, _: _set(h5, "pos_boxes", 2, [6, 99])),
        "train.hdf5: row 2: image 23: pos_boxes [6, 99) is not a non-empty range of the 15 boxes"),
    "ban-vqa pos_boxes of another shape": (
        lambda t: _h5_edit(t, "ban", lambda h5, _: _replace(h5, "pos_boxes", np.zeros((5, 3), int))),
        "train.hdf5: pos_boxes is (5, 3), expected (images, 2)"),
    "hdf5 NaN": (lambda t: _h5_edit(t, "ban", lambda h5, _: _set(h5, "image_features", 0, np.nan)),
                 "train.hdf5: row 0: image 9: NaN or infinite values"),
    "npz key missing": (lambda t: _npz_edit(t, lambda z: {k: v for k, v in z.items() if k != "bbox"}),
                        "COCO_train2014_000000000023.jpg.npz: no 'bbox'"),
    "npz box count disagrees": (lambda t: _npz_edit(t, lambda z: {**z, "num_bbox": 5}),
                                "COCO_train2014_000000000023.jpg.npz: image 23: x (16, 3) has no "
                                "side of num_bbox=5"),
    "npz not an npz": (lambda t: _npz_edit(t, None),
                       "COCO_train2014_000000000023.jpg.npz: not a readable .npz file"),
    "image of the questions missing": (
        lambda t: ["--format", "tsv", "--source", str(write_tsv(t / "feat.tsv", images()[:2])),
                   "--questions", str(_questions(t, [9, 16, 23]))],
        "feat.tsv: 1 image(s) of the questions are not in the release, e.g. [23]"),
}


def _npz_edit(tmp_path: Path, edit) -> list[str]:
    folder = write_npz(tmp_path / "npz", images())
    path = folder / "COCO_train2014_000000000023.jpg.npz"
    if edit is None:
        path.write_bytes(path.read_bytes()[:100])
    else:
        with np.load(path) as z:
            arrays = edit(dict(z))
        np.savez(path, **arrays)
    return ["--format", "npz", "--source", str(folder)]


def _questions(tmp_path: Path, image_ids: list[int]) -> Path:
    import json

    path = tmp_path / "questions.json"
    path.write_text(json.dumps({"data_subtype": "train2014", "questions": [
        {"image_id": i, "question": "what?", "question_id": 10 * i} for i in image_ids]}))
    return path


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_release_fails_naming_where(tmp_path: Path, case: str,
                                              capsys: pytest.CaptureFixture) -> None:
    make, message = MALFORMED[case]
    args = make(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["convert-features", *args, "--out", str(tmp_path / "cache")])
    assert message in str(e.value), e.value
    assert "pickled code ran" not in capsys.readouterr().out


def test_an_interrupted_conversion_resumes(tmp_path: Path) -> None:
    """A bad line stops the conversion after the rows before it, which stay done; fixed, the
    same command converts the rest, equal to a conversion in one go."""
    imgs = images(150)
    path = write_tsv(tmp_path / "f.tsv", imgs)
    good = path.read_bytes()
    _tsv_line(path, 100, lambda f: [*f[:4], f[4][:40]])
    with pytest.raises(SystemExit, match=r"f\.tsv:100:"):
        main(["convert-features", "--format", "tsv", "--source", str(path), "--out",
              str(tmp_path / "cache")])
    assert RegionCache(tmp_path / "cache").meta["done"] == 99
    assert "incomplete: 99 of 150" in check_regions(tmp_path / "cache")[0]
    path.write_bytes(good)
    resumed = convert(["--format", "tsv", "--source", str(path)], tmp_path / "cache")
    whole = convert(["--format", "tsv", "--source", str(path)], tmp_path / "whole")
    for name in ("features", "boxes", "counts", "sizes"):
        np.testing.assert_array_equal(resumed.arrays[name], whole.arrays[name])
    assert resumed.meta == whole.meta


@pytest.mark.parametrize("name", MECHANISMS)
def test_every_mechanism_over_padded_boxes(tmp_path: Path, name: str) -> None:
    """Boxes of three images (1, 1 and 3) collated with geometry: padded boxes get exactly zero
    attention, and more padding changes nothing."""
    imgs = images(3, dim=12, ids=[1, 2, 3])  # 1, 2 and 3 boxes
    imgs[1] = {**imgs[1], "boxes": imgs[1]["boxes"][:1], "features": imgs[1]["features"][:1]}
    cache = convert(["--format", "tsv", "--source", str(write_tsv(tmp_path / "f.tsv", imgs))],
                    tmp_path / "cache")
    source = CachedFeatures([cache])
    items = [{**source[iid], "image_id": iid, "question": torch.tensor([3, 4, 5, 0]),
              "question_mask": torch.tensor([True, True, True, False]), "target": torch.zeros(A),
              "answer_index": 0, "groups": torch.zeros(1), "question_id": q, "extra": {}}
             for q, iid in enumerate([1, 2, 3, 2, 1])]
    batch = collate(items)
    assert batch.features.shape == (3, 3, 12) and batch.region_mask.sum(1).tolist() == [1, 1, 3]
    torch.manual_seed(0)
    model = VQAModel(V, A, MECHANISMS[name], image_dim=12, dim=D, dropout=0.0, box_geometry=True).eval()
    with torch.no_grad():
        out = model(**batch.inputs())
        more = dict(batch.inputs())
        more["features"] = torch.cat([batch.features, torch.randn(3, 2, 12).half()], 1)
        more["boxes"] = torch.cat([batch.boxes, torch.rand(3, 2, 4)], 1)
        more["region_mask"] = torch.cat([batch.region_mask, torch.zeros(3, 2, dtype=torch.bool)], 1)
        padded = model(**more)
    padding = ~batch.region_mask[batch.image_index]  # (B, N)
    assert not out["image_attention"].masked_select(padding[:, None]).any()
    torch.testing.assert_close(padded["logits"], out["logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MECHANISMS)
def test_every_mechanism_over_boxes_pooled_from_images(name: str) -> None:
    """Images with 2 and 4 candidate boxes through a BoxEncoder (RoIAlign over the small CNN):
    finite outputs, zero attention on the padded boxes, and gradients reach the CNN."""
    from vqa.models import BoxEncoder, SmallCNN

    torch.manual_seed(0)
    model = VQAModel(V, A, MECHANISMS[name], BoxEncoder(SmallCNN((8, 8), coord_gates=2)), dim=D,
                     dropout=0.0, box_geometry=True)
    boxes = torch.rand(2, 4, 4).sort(-1).values[..., [0, 2, 1, 3]]  # x1 <= x2, y1 <= y2
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    boxes[~mask] = 0
    out = model(question=torch.tensor([[3, 4, 0], [5, 0, 0]]),
                question_mask=torch.tensor([[True, True, False], [True, False, False]]),
                image=torch.randn(2, 3, 32, 32), region_mask=mask, boxes=boxes)
    assert torch.isfinite(out["logits"]).all() and not out["image_attention"][0, :, 2:].any()
    out["logits"].sum().backward()
    assert model.image_encoder.encoder.net[0].weight.grad.abs().sum() > 0


def region_overlay(shapes_dir: Path, tmp_path: Path) -> Path:
    """A TSV of boxes for each shapes split's images (random features and boxes), converted; a
    config overlay that trains on them with box geometry."""
    import json

    caches = {}
    for split in ("train", "val"):
        qs = json.loads((shapes_dir / QUESTIONS_FILE.format(split=split)).read_text())["questions"]
        ids = sorted({q["image_id"] for q in qs})
        tsv = write_tsv(tmp_path / f"{split}.tsv", images(ids=ids, dim=24, seed=len(ids)))
        caches[split] = str(tmp_path / split)
        main(["convert-features", "--format", "tsv", "--source", str(tsv), "--out", caches[split],
              "--max-boxes", "10"])
    data = {s: {**_split(shapes_dir, s), "features": caches[s]} for s in caches}
    overlay = tmp_path / "regions.yaml"
    overlay.write_text(yaml.safe_dump({
        "data": {**data, "batch_size": 32},
        "model": {"model": {"init_args": {"image_encoder": None, "box_geometry": True}}},
        "trainer": {"max_epochs": 1, "limit_train_batches": 4, "enable_progress_bar": False,
                    "log_every_n_steps": 1}}))
    return overlay


@pytest.mark.parametrize("mechanism", ["alternating", "mcan"])
def test_fit_on_region_features(shapes_dir: Path, tmp_path: Path, mechanism: str) -> None:
    """One short epoch over boxes: the checkpoint's pipeline has no grid and the projection
    reads the features and their geometry."""
    extra = ["-c", str(ROOT / f"configs/shapes/{mechanism}.yaml")] if mechanism != "alternating" else []
    main(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), *extra,
          "-c", str(region_overlay(shapes_dir, tmp_path)),
          "--trainer.default_root_dir", str(tmp_path / "run")])
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["vqa_pipeline"]["grid"] is None and ckpt["vqa_pipeline"]["image_dim"] == 24
    assert ckpt["state_dict"]["model.image_proj.weight"].shape[1] == 24 + 5


@pytest.mark.slow
def test_ddp_fit_on_region_features(shapes_dir: Path, tmp_path: Path) -> None:
    """Two CPU processes over boxes of varying counts (each process pads its own batches)."""
    from test_distributed import DDP, last_metrics, run_vqa

    run_vqa(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"),
             "-c", str(region_overlay(shapes_dir, tmp_path)), *DDP,
             "--trainer.default_root_dir", str(tmp_path / "run")], tmp_path)
    assert (tmp_path / "run/checkpoints/best.ckpt").is_file()
    assert 0 <= last_metrics(tmp_path / "run")["val/vqa_acc"] <= 100


def _split(root: Path, split: str) -> dict[str, str]:
    s = shapes_split(root, split)
    return {"questions": s.questions, "annotations": s.annotations, "images": s.images,
            "image_template": s.image_template}



def test_check_features_reads_region_caches(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    imgs = images(3)
    convert(["--format", "tsv", "--source", str(write_tsv(tmp_path / "f.tsv", imgs))], tmp_path / "c")
    main(["check-features", "--cache", str(tmp_path / "c"), "--questions",
          str(_questions(tmp_path, [9, 16]))])
    assert "3 images, up to 100 boxes x 16 features" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"1 image\(s\) needed by the questions are not cached, e.g. \[99\]"):
        main(["check-features", "--cache", str(tmp_path / "c"), "--questions",
              str(_questions(tmp_path, [9, 16, 99]))])


def test_shapes_candidate_boxes_hold_the_objects_and_empty_background(shapes_dir: Path) -> None:
    """Every referred object's box is a candidate; the other candidates are 2-5 boxes clear of
    every drawn pixel (the background colour only)."""
    import json

    from PIL import Image

    from vqa.data.boxes import read_boxes
    from vqa.data.shapes import ANNOTATIONS_FILE, BACKGROUND, BOXES_FILE, IMAGE_TEMPLATE

    boxes = read_boxes(shapes_dir / BOXES_FILE.format(split="val"))
    anns = json.loads((shapes_dir / ANNOTATIONS_FILE.format(split="val")).read_text())["annotations"]
    objects: dict[int, set] = {}
    for a in anns:
        objects.setdefault(a["image_id"], set()).update(map(tuple, a["grounding"]["boxes"]))
    assert set(objects) == set(boxes)
    for iid, ib in boxes.items():
        candidates = {tuple(int(v) for v in b) for b in ib.boxes}
        assert objects[iid] <= candidates
        image = np.asarray(Image.open(shapes_dir / "val" / IMAGE_TEMPLATE.format(
            data_subtype="val", image_id=iid)))
        drawn = {c for c in candidates if (image[c[1]:c[3], c[0]:c[2]] != BACKGROUND).any()}
        assert objects[iid] <= drawn and 2 <= len(candidates - drawn) <= 5


def test_box_encoder_pools_the_cells_inside_each_box() -> None:
    """RoIAlign over a map whose cells hold their own index: a box over exactly one cell gives
    that cell; the whole image gives the mean; padded (zero) boxes are finite."""
    from vqa.models import BoxEncoder

    class Cells(torch.nn.Module):  # a 4 x 4 "grid encoder": cell n holds n
        out_dim = 1

        def grid(self, size):
            return 4, 4

        def forward(self, image):
            return torch.arange(16.0).repeat(len(image), 1)[..., None]  # (B, 16, 1)

    boxes = torch.tensor([[[0.25, 0.5, 0.5, 0.75], [0, 0, 1, 1], [0, 0, 0, 0]]])  # cell (2, 1)
    out = BoxEncoder(Cells(), output_size=2)(torch.zeros(1, 3, 64, 64), boxes)  # (1, 3, 1)
    assert out.shape == (1, 3, 1) and torch.isfinite(out).all()
    assert out[0, 0, 0].item() == pytest.approx(9.0) and out[0, 1, 0].item() == pytest.approx(7.5)


def test_shapes_with_boxes_fit_and_box_grounding(shapes_dir: Path, tmp_path: Path) -> None:
    """One short epoch of the boxes overlay: region features pooled by RoIAlign over candidate
    boxes; box pointing logged per map; the attention table draws boxes."""
    from vqa.data.shapes import BOXES_FILE

    data = {s: {**_split(shapes_dir, s), "boxes": str(shapes_dir / BOXES_FILE.format(split=s))}
            for s in ("train", "val")}
    overlay = tmp_path / "o.yaml"
    overlay.write_text(yaml.safe_dump({
        "data": {**data, "batch_size": 32, "cache_dir": None},
        "trainer": {"max_epochs": 1, "limit_train_batches": 4, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "run")}}))
    cli = run(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"),
               "-c", str(ROOT / "configs/shapes/boxes.yaml"), "-c", str(overlay)])
    metrics = cli.trainer.callback_metrics
    assert 0 <= float(metrics["val/grounding/question/pointing"]) <= 100
    assert cli.model.pipeline.grid is None
    # box cover: 1 exactly at the candidates that are the referred objects
    ds = cli.datamodule.dataset("val")
    for i in range(20):
        ex, item = ds.examples[i], ds[i]
        candidates = ds.images.boxes[ex.image_id].boxes.astype(int).tolist()
        referred = [candidates.index(b) for b in ex.extra["grounding"]["boxes"]]
        assert sorted(np.flatnonzero(item["extra"]["box_cover"].numpy()).tolist()) == sorted(referred)
    # vqa attend over boxes: the figure draws the image's boxes; without boxes, a clear error
    ex = ds.examples[0]
    image = Path(data["val"]["images"]) / f"shapes_val_{ex.image_id:012d}.png"
    ckpt = str(tmp_path / "run/checkpoints/last.ckpt")
    main(["attend", "--ckpt", ckpt, "--image", str(image), "--question", ex.question,
          "--boxes", data["val"]["boxes"], "--out", str(tmp_path / "a.png")])
    assert (tmp_path / "a.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="this model attends over boxes"):
        main(["attend", "--ckpt", ckpt, "--image", str(image), "--question", ex.question])


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A resnet18 state dict a test creates (no network): torchvision's own loading path."""
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return str(path)


def test_extract_region_features_over_a_boxes_file(shapes_dir: Path, tmp_path: Path,
                                                   resnet18_weights: str) -> None:
    """`vqa extract-features --boxes`: RoIAlign over a frozen resnet18's layer3 in each box of
    the file; boxes and counts as given; features those of BoxEncoder run directly; a second
    run finds the cache complete."""
    from vqa.data.boxes import read_boxes
    from vqa.data.pipeline import load_image, normalize_image
    from vqa.data.shapes import BOXES_FILE
    from vqa.models import BoxEncoder, TorchvisionEncoder

    boxes_file = shapes_dir / BOXES_FILE.format(split="val")
    args = ["extract-features", "--images", str(shapes_dir / "val"), "--out", str(tmp_path / "c"),
            "--name", "resnet18", "--weights", resnet18_weights, "--layer", "layer3",
            "--image_size", "64", "--boxes", str(boxes_file), "--num_workers", "0"]
    main(args)
    cache, given = RegionCache(tmp_path / "c"), read_boxes(boxes_file)
    assert cache.complete and set(cache.row) == set(given) and cache.dim == 256
    encoder = BoxEncoder(TorchvisionEncoder("resnet18", resnet18_weights, "layer3")).eval()
    for iid in list(given)[:3]:
        r = cache[iid]
        np.testing.assert_array_equal(r.boxes, given[iid].boxes)
        image = load_image(shapes_dir / "val" / f"shapes_val_{iid:012d}.png", (64, 64))
        with torch.no_grad():
            direct = encoder(normalize_image(image[None]), torch.from_numpy(given[iid].normalized())[None])
        np.testing.assert_allclose(r.features, direct[0].numpy(), rtol=2e-3, atol=2e-3)
    main(args)  # resumes: nothing left to do
    assert RegionCache(tmp_path / "c").meta == cache.meta


def test_extract_region_features_from_detector_proposals(shapes_dir: Path, tmp_path: Path,
                                                         resnet18_weights: str) -> None:
    """A torchvision detector (weights a test creates) proposes the boxes: 1 to max_boxes per
    image, inside the image."""
    import torchvision

    images = tmp_path / "images"
    images.mkdir()
    for f in sorted((shapes_dir / "val").iterdir())[:3]:
        (images / f.name).write_bytes(f.read_bytes())
    weights = tmp_path / "detector.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_320_fpn",
                                            weights_backbone=None).state_dict(), weights)
    main(["extract-features", "--images", str(images), "--out", str(tmp_path / "c"),
          "--name", "resnet18", "--weights", resnet18_weights, "--layer", "layer3",
          "--image_size", "64", "--detector", "fasterrcnn_mobilenet_v3_large_320_fpn",
          "--detector_weights", str(weights), "--max_boxes", "5", "--min_score", "0.0",
          "--num_workers", "0"])
    cache = RegionCache(tmp_path / "c")
    assert len(cache) == 3 and cache.meta["source"]["detector"] == "fasterrcnn_mobilenet_v3_large_320_fpn"
    for iid in cache.row:
        r = cache[iid]
        assert 1 <= len(r.boxes) <= 5 and (r.width, r.height) == (64, 64)
        assert (r.boxes >= -1).all() and (r.boxes <= 65).all()


def test_id_map_of_numpy_integers_reads_and_a_failed_start_is_reported(tmp_path: Path) -> None:
    """An id map whose rows are numpy integers (protocol 2, as Python 2 wrote them) reads; a
    conversion stopped at its first image leaves a cache that says so."""
    h5, ids = write_bua_hdf5(tmp_path, images())
    ids.write_bytes(pickle.dumps({k: np.int64(v) for k, v in pickle.loads(ids.read_bytes()).items()},
                                 protocol=2))
    cache = convert(["--format", "hdf5", "--source", str(h5), "--ids-map", str(ids)], tmp_path / "c")
    assert len(cache) == 5
    bad = _malformed_tsv(tmp_path, lambda f: [*f[:3], "9", *f[4:]], line=1)
    with pytest.raises(SystemExit, match=r"bad\.tsv:1: image 9: num_boxes 9"):
        main(["convert-features", *bad, "--out", str(tmp_path / "none")])
    assert "no image converted yet" in check_regions(tmp_path / "none")


def test_boxes_need_a_box_encoder_and_blind_hides_geometry() -> None:
    from vqa.models import SmallCNN

    grid = VQAModel(V, A, MECHANISMS["san"], SmallCNN((8, 8), coord_gates=0), dim=D, dropout=0.0)
    inputs = {"question": torch.tensor([[3, 4]]), "question_mask": torch.ones(1, 2, dtype=torch.bool),
              "image": torch.randn(1, 3, 32, 32), "boxes": torch.rand(1, 3, 4),
              "region_mask": torch.ones(1, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="the data gives candidate boxes"):
        grid(**inputs)
    blind = VQAModel(V, A, MECHANISMS["san"], image_dim=12, dim=D, dropout=0.0, box_geometry=True,
                     blind=True).eval()
    x = {"question": inputs["question"], "question_mask": inputs["question_mask"],
         "features": torch.randn(1, 3, 12), "region_mask": inputs["region_mask"]}
    with torch.no_grad():
        a, b = blind(**x, boxes=torch.rand(1, 3, 4)), blind(**x, boxes=torch.rand(1, 3, 4))
    torch.testing.assert_close(a["logits"], b["logits"])
