"""The preprocessing cache holds data, never code: planted pickles are not run, and an unreadable
cache file is rebuilt with a warning naming it."""

import hashlib
import pickle
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import shapes_split

from vqa.data import VQADataModule
from vqa.data import datamodule as datamodule_module
from vqa.data.preprocess import CACHE_FORMAT, Preprocessed


class Payload:
    """Unpickling this creates ``marker``: what a planted cache file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.touch, (self.marker,)


def payload(marker: Path) -> bytes:
    data = pickle.dumps(Payload(marker))
    probe = marker.with_name("probe")
    pickle.loads(pickle.dumps(Payload(probe)))  # the payload is live: unpickling it runs code
    assert probe.exists()
    probe.unlink()
    return data


def build(shapes_dir: Path, cache: Path) -> VQADataModule:
    dm = VQADataModule(shapes_split(shapes_dir, "train"), image_size=32, max_question_length=16,
                       cache_dir=str(cache))
    dm.preprocessed("train")
    return dm


def assert_same(a: VQADataModule, b: VQADataModule) -> None:
    """Same vocabularies and preprocessed split, with the same types and dtypes."""
    for va, vb in ((a.pipeline.tokenizer.vocab, b.pipeline.tokenizer.vocab),
                   (a.pipeline.answers, b.pipeline.answers)):
        assert (va.tokens, va.unknown, va.index) == (vb.tokens, vb.unknown, vb.index)
    (pa, sa), (pb, sb) = a.preprocessed("train"), b.preprocessed("train")
    assert sa == sb
    for f in fields(Preprocessed):
        x, y = getattr(pa, f.name), getattr(pb, f.name)
        assert type(x) is type(y), f.name
        if isinstance(x, torch.Tensor | np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and (x == y).all(), f.name
        else:
            assert x == y, f.name


def cache_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "cache" in str(w.message)]


def test_round_trip_reads_data_only_files(shapes_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first = build(shapes_dir, tmp_path)
    files = sorted(tmp_path.iterdir())
    assert [p.suffix for p in files] == [".npz", ".npz"]
    for p in files:  # plain arrays only: loadable without pickle
        with np.load(p, allow_pickle=False) as z:
            assert all(not z[k].dtype.hasobject for k in z.files)

    def fail(*args: Any) -> None:
        raise AssertionError("rebuilt instead of read from the cache")

    monkeypatch.setattr(VQADataModule, "_read", fail)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = build(shapes_dir, tmp_path)
    assert cache_warnings(record) == []
    assert again.preprocessed("train")[0].questions.dtype == torch.int64
    assert_same(first, again)


def test_planted_pickles_are_never_run(shapes_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache, marker = tmp_path / "cache", tmp_path / "MARKER"
    keys: list[tuple[str, Any]] = []
    real = datamodule_module.cached

    def spy(cache_dir: Any, name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        keys.append((name, key))
        return real(cache_dir, name, key, *args, **kwargs)

    monkeypatch.setattr(datamodule_module, "cached", spy)
    first = build(shapes_dir, cache)
    monkeypatch.undo()
    assert len(keys) == 2
    planted = payload(marker)
    entries = list(cache.iterdir())
    for p in entries:
        p.write_bytes(planted)
    for name, key in keys:  # where the old pickle cache kept them
        for fmt in ("vqa-preprocessed/5", CACHE_FORMAT):
            digest = hashlib.sha256(repr([fmt, key]).encode()).hexdigest()[:20]
            (cache / f"{name}-{digest}.pkl").write_bytes(planted)

    with pytest.warns(UserWarning) as record:
        again = build(shapes_dir, cache)
    assert not marker.exists()
    messages = cache_warnings(record)
    assert len(messages) == 2 and all(any(str(p) in m for m in messages) for p in entries)
    assert_same(first, again)


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "pickled object array",
                                    "wrong structure"])
def test_unreadable_cache_is_rebuilt_with_a_warning(shapes_dir: Path, tmp_path: Path,
                                                    damage: str) -> None:
    cache, marker = tmp_path / "cache", tmp_path / "MARKER"
    first = build(shapes_dir, cache)
    vocab, split = sorted(cache.iterdir(), key=lambda p: not p.name.startswith("train-"))[::-1]
    data = split.read_bytes()
    if damage == "truncated":
        split.write_bytes(data[: len(data) // 2])
    elif damage == "not a zip":
        split.write_bytes(b"\x00" * 64)
    elif damage == "pickled object array":
        with open(split, "wb") as f:
            np.savez(f, tree=np.zeros(3, np.uint8), **{"0": np.array([Payload(marker)], object)})
    else:  # a valid file of another entry
        split.write_bytes(vocab.read_bytes())

    with pytest.warns(UserWarning) as record:
        again = build(shapes_dir, cache)
    assert not marker.exists()
    messages = cache_warnings(record)
    assert len(messages) == 1 and str(split) in messages[0] and "\n" not in messages[0]
    assert_same(first, again)
    assert split.read_bytes() == data  # rewritten as built


@pytest.mark.slow
def test_planted_pickles_run_nothing_in_any_command(shapes_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`vqa fit` fills the cache; every file in it is then replaced by a live pickle (and one is
    planted beside it under the `.pkl` name earlier versions read): `validate`, `predict`,
    `attend` and a resumed `fit` run none of them."""
    import yaml

    from vqa.cli import main

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    data = {s: vars(shapes_split(shapes_dir, s)) for s in ("train", "val")}
    Path("tiny.yaml").write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
        "data": {**data, "batch_size": 32, "cache_dir": "cache"}}))
    config = ["-c", str(root / "configs/shapes/alternating.yaml"), "-c", "tiny.yaml"]
    main(["fit", *config])
    cache = sorted(Path("cache").iterdir())
    assert cache
    marker = tmp_path / "MARKER"
    for p in cache:  # each file under its own name, and beside it under the old `.pkl` name
        p.write_bytes(payload(marker))
        p.with_suffix(".pkl").write_bytes(payload(marker))
    ckpt = "runs/shapes/alternating/checkpoints/best.ckpt"
    image = sorted((shapes_dir / "val").glob("*.png"))[0]
    for command in (["validate", *config, "--ckpt_path", ckpt],
                    ["predict", *config, "--ckpt_path", ckpt],
                    ["attend", "--ckpt", ckpt, "--image", str(image), "--question", "What colour?",
                     "--out", "a.png"],
                    ["fit", *config, "--ckpt_path", "last", "--trainer.max_epochs", "2"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            main(command)
        assert not marker.exists(), f"`vqa {command[0]}` ran a planted pickle"
        if command[0] == "validate":  # the first to read the cache: rebuilds it, saying so
            said = [str(w.message) for w in caught if "unreadable cache file" in str(w.message)]
            assert said and all(s.startswith("cache/") for s in said), said
