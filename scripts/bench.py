"""Benchmark: every attention mechanism's training and inference speed at its paper's sizes, and the
data path's rate.

Mechanisms (``--variants``): HieCoAtt's parallel and alternating co-attention (d = k = 512, the
hierarchical question encoder), and, with a 1-layer LSTM question encoder, the no-attention
baseline (d = 512), SAN-2 (d = k = 512), BUTD (d = 1024), MCAN-small (d = 512, 6 layers of 8 heads)
and BAN-8 (d = 1280), each at its paper's width over the same grid features.

Model: every configuration (variant x answers x batch x questions per image x precision x compile)
runs in a fresh subprocess on random inputs resident on the device: 196 regions of 2048-d float16
features, 26-token questions (all real), 13,000 words. A training step is zero_grad + forward +
backward + fused Adam; the median step after warm-up gives samples/s. Peak memory is the CUDA
allocator's peak during training, or on the CPU the growth of peak RSS over the RSS after imports.
FLOPs come from ``torch.utils.flop_counter`` (matmuls and convolutions; it leaves out the LSTM on
the CPU, see the footnote it prints) and are set against a (4096 x 2048) @ (2048 x 2048) matmul in
the same precision, timed in the same run.

Data: ``VQADataModule`` training loaders over generated shapes scenes at 448 px, once from COCO
named JPEGs and once from a feature cache (random float16) of the same images; the first epoch
warms up (worker start-up, page cache), the second is timed. Images/s counts the distinct images
in each batch; every question's item still reads its own copy.

    python scripts/bench.py [--device auto|cpu|cuda] [--variants parallel alternating]
        [--answers 1000 3129] [--batch 128 300] [--qpi 1 5.4] [--precision 32 bf16]
        [--compile [off on]] [--steps 8] [--warmup 2] [--threads 2] [--no-model]
        [--workers 2] [--data-batch 128] [--data-questions 1000] [--no-data]
        [--profile 3] [--workdir runs/bench] [--out runs/bench/bench.json]

``--profile N`` also runs N training steps (after N more, unprofiled) under ``torch.profiler``
and prints, per configuration, the operators that took the most self time and the share of the
step spent in matrix products (mm, bmm, addmm, convolutions, the LSTM) against everything else.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vqa._io import read_json, write_json
from vqa.models import (
    AlternatingCoAttention,
    BilinearAttention,
    HieCoAtt,
    LSTMQuestionEncoder,
    ModularCoAttention,
    NoAttention,
    ParallelCoAttention,
    StackedAttention,
    TopDownAttention,
    VQAModel,
)

if TYPE_CHECKING:
    from vqa.data import Split

SINGLE_LEVEL = {  # mechanism, d, dropout: each paper's setting (configs/vqa2/*.yaml)
    "none": (NoAttention, 512, 0.5),
    "san2": (partial(StackedAttention, hops=2), 512, 0.5),
    "butd": (TopDownAttention, 1024, 0.5),
    "mcan_small": (partial(ModularCoAttention, depth=6, heads=8), 512, 0.1),
    "ban8": (partial(BilinearAttention, glimpses=8, rank=3), 1280, 0.2),
}
VARIANTS = ["parallel", "alternating", *SINGLE_LEVEL]


def build(variant: str, vocab: int, answers: int) -> nn.Module:
    """The model of ``variant`` at its paper's sizes over 2048-d grid features."""
    if variant in ("parallel", "alternating"):
        coattention = ParallelCoAttention if variant == "parallel" else AlternatingCoAttention
        return HieCoAtt(vocab, answers, coattention=coattention, image_dim=FEATURE_DIM)
    attention, dim, dropout = SINGLE_LEVEL[variant]
    return VQAModel(vocab, answers, attention, question_encoder=partial(LSTMQuestionEncoder,
                    lstm_layers=1), image_dim=FEATURE_DIM, dim=dim, dropout=dropout)
DTYPES = {"32": torch.float32, "bf16": torch.bfloat16}
REGIONS, FEATURE_DIM, TOKENS = 196, 2048, 26  # 14 x 14 grid of ResNet-152 res5c, VQA v2 max length
MATMUL = (4096, 2048, 2048)  # (M, K, N) of the reference product


def timed(step: Callable[[], Any], warmup: int, steps: int, device: str) -> list[float]:
    """Seconds taken by each of ``steps`` calls of ``step``, after ``warmup`` untimed calls."""
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return times


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``step``, as ``torch.utils.flop_counter`` counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def lstm_flops(lstm: nn.LSTM, tokens: int) -> int:
    """Forward FLOPs of a one-way LSTM over one sequence: per step and layer, 4 gates of
    (input + hidden) x hidden multiply-adds."""
    inputs = [lstm.input_size] + [lstm.hidden_size] * (lstm.num_layers - 1)
    return sum(2 * 4 * (i + lstm.hidden_size) * lstm.hidden_size for i in inputs) * tokens


ARITHMETIC = ("aten::mm", "aten::bmm", "aten::addmm", "aten::convolution_backward",
              "aten::mkldnn_convolution", "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward",
              "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def profiled(step: Callable[[], Any], steps: int, top: int = 12) -> dict[str, Any]:
    """Self time of each operator over ``steps`` calls of ``step`` (``torch.profiler``), after as
    many unprofiled calls (the first steps' large tensors still fault in fresh pages): the ``top``
    costliest, and the share of all self time spent in matrix products."""
    from torch.profiler import profile

    for _ in range(steps):
        step()
    with profile() as prof:
        for _ in range(steps):
            step()
    ops = sorted(((e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()
                  if e.key.startswith("aten::")), key=lambda o: -o[1])
    total = sum(o[1] for o in ops)
    return {"steps": steps, "total_ms": total / 1e3, "matmul_share": sum(
                o[1] for o in ops if o[0] in ARITHMETIC) / total,
            "top": [{"op": k, "ms_per_step": t / 1e3 / steps, "share": t / total,
                     "calls_per_step": n / steps} for k, t, n in ops[:top]]}


def rss_mib() -> float:
    """Resident set size now (Linux ``/proc/self/statm``; no psutil needed)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def random_batch(cfg: dict[str, Any]) -> dict[str, torch.Tensor | None]:
    """Model inputs: ``ceil(B / qpi)`` images, questions assigned to them in runs of about qpi."""
    b, device = cfg["batch"], cfg["device"]
    b_img = math.ceil(b / cfg["qpi"])
    return {"question": torch.randint(1, cfg["vocab"], (b, TOKENS), device=device),
            "question_mask": torch.ones(b, TOKENS, dtype=torch.bool, device=device),
            "features": torch.randn(b_img, REGIONS, FEATURE_DIM, device=device).half(),
            "image_index": None if b_img == b else torch.arange(b, device=device) * b_img // b}


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """One model configuration in this process: step times, peak memory, FLOPs per sample."""
    device, b = cfg["device"], cfg["batch"]
    torch.set_num_threads(cfg["threads"])
    base_rss = rss_mib()
    torch.manual_seed(0)
    model = build(cfg["variant"], cfg["vocab"], cfg["answers"]).to(device)
    run = torch.compile(model) if cfg["compile"] == "on" else model
    x = random_batch(cfg)
    target = torch.randint(0, cfg["answers"], (b,), device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    amp = torch.autocast(device, torch.bfloat16) if cfg["precision"] == "bf16" else nullcontext()

    def train_step(m: nn.Module, amp: AbstractContextManager = amp) -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            logits = m(**x)["logits"]
        F.cross_entropy(logits.float(), target).backward()
        opt.step()

    def infer_step(m: nn.Module, amp: AbstractContextManager = amp) -> None:
        with torch.inference_mode(), amp:
            m(**x)

    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train = timed(lambda: train_step(run), cfg["warmup"], cfg["steps"], device)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss)
    # FLOPs are counted on the uncompiled model in fp32: the same arithmetic, and under CPU bf16
    # autocast the flop counter's LSTM decomposition fails in oneDNN.
    train_flops = count_flops(lambda: train_step(model, nullcontext()))
    profile = profiled(lambda: train_step(run), cfg["profile"]) if cfg.get("profile") else None
    model.eval()
    infer = timed(lambda: infer_step(run), cfg["warmup"], cfg["steps"], device)
    infer_flops = count_flops(lambda: infer_step(model, nullcontext()))
    lstm = model.question_encoder.lstm
    with torch.inference_mode():
        probe = torch.randn(1, TOKENS, lstm.input_size, device=device)
        lstm_counted = count_flops(lambda: lstm(probe)) > 0
    return {**cfg, "train_step_s": train, "infer_step_s": infer,
            "train_samples_s": b / statistics.median(train),
            "infer_samples_s": b / statistics.median(infer), "peak_mib": peak,
            "train_flops_per_sample": train_flops / b, "infer_flops_per_sample": infer_flops / b,
            "lstm_counted": lstm_counted, "lstm_forward_flops_per_sample": lstm_flops(lstm, TOKENS),
            "profile": profile}


def run_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``measure(cfg)`` in a fresh interpreter: its own peak RSS, nothing shared between configs."""
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)],
                          capture_output=True, text=True)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        return {**cfg, "error": lines[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_gflops(device: str, dtype: torch.dtype, reps: int = 5) -> float:
    """Rate of the reference matmul in ``dtype``: median of ``reps`` after 2 warm-up products."""
    m, k, n = MATMUL
    a, b = (torch.randn(*s, device=device, dtype=dtype) for s in ((m, k), (k, n)))
    return 2 * m * k * n / statistics.median(timed(lambda: a @ b, 2, reps, device)) / 1e9


def environment(device: str, threads: int) -> dict[str, Any]:
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")),
                    platform.processor())
    return {"device": device, "device_name": name, "cpus": os.cpu_count(), "threads": threads,
            "torch": str(torch.__version__), "python": platform.python_version(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def write_cache(folder: Path, ids: list[int], chunk: int = 64) -> None:
    """A complete feature cache in ``vqa.data.features``' layout, random float16 values for ``ids``."""
    from vqa.data.features import ARRAY, FORMAT, INDEX

    folder.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(folder / ARRAY, mode="w+", dtype=np.float16,
                                      shape=(len(ids), REGIONS, FEATURE_DIM))
    rng = np.random.default_rng(0)
    for s in range(0, len(ids), chunk):
        array[s:s + chunk] = rng.standard_normal((len(array[s:s + chunk]), REGIONS, FEATURE_DIM),
                                                 np.float32)
    array.flush()
    del array
    side = math.isqrt(REGIONS)
    write_json(folder / INDEX, {"format": FORMAT, "settings": {"backbone": "random (bench.py)"},
                                "shape": [REGIONS, FEATURE_DIM], "grid": [side, side],
                                "ids": ids, "done": len(ids)})


def bench_splits(root: Path, questions: int, per_image: int) -> dict[str, Split]:
    """The shapes train split at 448 px as COCO named JPEGs and as a feature cache, built under
    ``root`` once and reused."""
    # Imported here: Lightning takes seconds to import, which the model subprocesses don't need.
    from PIL import Image

    from vqa.data import Split
    from vqa.data.example import COCO_TEMPLATE
    from vqa.data.shapes import ANNOTATIONS_FILE, QUESTIONS_FILE, make_shapes

    shapes = root / "shapes"
    if not (root / "ready").is_file():
        make_shapes(shapes, train=questions, val=0, seed=0, image_size=448,
                    questions_per_image=per_image)
        ann = read_json(shapes / ANNOTATIONS_FILE.format(split="train"))
        for a in ann["annotations"]:
            a.pop("grounding")  # as in VQA; with it, every item would also rasterise its boxes
        write_json(root / "annotations.json", ann)
        (root / "jpeg").mkdir(exist_ok=True)
        ids = []
        for png in sorted((shapes / "train").glob("*.png")):
            ids.append(int(png.stem.rsplit("_", 1)[1]))
            Image.open(png).convert("RGB").save(
                root / "jpeg" / COCO_TEMPLATE.format(data_subtype="train2014", image_id=ids[-1]),
                quality=90)
        write_cache(root / "features", ids)
        (root / "ready").touch()
    files = str(shapes / QUESTIONS_FILE.format(split="train")), str(root / "annotations.json")
    return {"JPEG 448 px": Split(*files, images=str(root / "jpeg"), data_subtype="train2014"),
            f"feature cache ({REGIONS} x {FEATURE_DIM} fp16)": Split(*files,
                                                                  features=str(root / "features"))}


def loader_rate(split: Split, workers: int, batch: int) -> dict[str, Any]:
    """Questions and distinct images per second over the second epoch of the training loader."""
    from vqa.data import VQADataModule

    dm = VQADataModule(train=split, image_size=448, batch_size=batch, num_workers=workers,
                       group_by_image=False)
    loader = dm.train_dataloader()  # persistent workers: the second epoch reuses them
    for _ in loader:
        pass
    t, questions, images, arrivals = time.perf_counter(), 0, 0, []
    for b in loader:
        questions += len(b)
        images += len(b.image if b.image is not None else b.features)
        arrivals.append(time.perf_counter() - t)
    return {"workers": workers, "batch": batch, "questions": questions, "images": images,
            "seconds": arrivals[-1], "samples_s": questions / arrivals[-1],
            "images_s": images / arrivals[-1], "batch_arrival_s": arrivals}


def finite_check_cost(folder: Path, batch: int = 300, reps: int = 5) -> dict[str, Any]:
    """Milliseconds per batch of ``batch`` cached images to read their rows off the memory map
    (as ``FeatureCache`` does) with and without the finite check every read now makes
    (``vqa.data.features.finite``); the best of ``reps`` passes over the same rows (page cache
    warm, so the check's share is an upper bound for a cold read)."""
    from vqa.data.features import FeatureCache, finite

    cache = FeatureCache(folder)
    rows = [cache.array[i % len(cache)] for i in range(batch)]

    def best(check: bool) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            for r in rows:
                copy = np.array(r)
                if check:
                    finite(copy)
            times.append(time.perf_counter() - t)
        return min(times) * 1000

    read, checked = best(False), best(True)
    return {"batch": batch, "shape": list(cache.shape), "read_ms": read, "read_checked_ms": checked,
            "check_ms": checked - read}


def markdown(headers: list[str], rows: list[list[Any]]) -> str:
    return "\n".join("| " + " | ".join(map(str, r)) + " |"
                     for r in [headers, ["---"] * len(headers), *rows])


def model_table(results: list[dict[str, Any]], matmul: dict[str, float], device: str) -> str:
    """One row per configuration; adds the achieved rates to ``results``."""
    unit, scale = ("TFLOP/s", 1e12) if device == "cuda" else ("GFLOP/s", 1e9)
    headers = ["variant", "answers", "batch", "q/img", "precision", "compile", "train samples/s",
               "infer samples/s", "peak MiB", "train GFLOP/sample", "infer GFLOP/sample",
               f"train {unit}", f"infer {unit}", "train % of matmul", "infer % of matmul"]
    rows = []
    for r in results:
        row = [r["variant"], r["answers"], r["batch"], f"{r['qpi']:g}", r["precision"], r["compile"]]
        if "error" in r:
            rows.append(row + [f"failed: {r['error'][:80]}"] + [""] * (len(headers) - len(row) - 1))
            continue
        for stage in ("train", "infer"):
            r[f"{stage}_flops_s"] = r[f"{stage}_flops_per_sample"] * r[f"{stage}_samples_s"]
            r[f"{stage}_matmul_pct"] = 100 * r[f"{stage}_flops_s"] / (matmul[r["precision"]] * 1e9)
        rows.append([*row, *(f"{v:.{digits}f}" for v, digits in (
            (r["train_samples_s"], 1), (r["infer_samples_s"], 1), (r["peak_mib"], 0),
            (r["train_flops_per_sample"] / 1e9, 2), (r["infer_flops_per_sample"] / 1e9, 2),
            (r["train_flops_s"] / scale, 2), (r["infer_flops_s"] / scale, 2),
            (r["train_matmul_pct"], 1), (r["infer_matmul_pct"], 1)))])
    out = markdown(headers, rows)
    uncounted = [r for r in results if r.get("lstm_counted") is False]
    if uncounted:
        by_hand = ", ".join(f"{v} {f / 1e9:.2f}" for v, f in dict(
            (r["variant"], r["lstm_forward_flops_per_sample"]) for r in uncounted).items())
        out += (f"\n\nFLOPs leave out the LSTM: torch.utils.flop_counter counts none for it on "
                f"{device} (by hand, GFLOP/sample forward, about twice that backward: {by_hand}).")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    p.add_argument("--answers", nargs="+", type=int, default=[1000, 3129])
    p.add_argument("--batch", nargs="+", type=int, default=[128, 300])
    p.add_argument("--qpi", nargs="+", type=float, default=[1, 5.4], help="questions per image")
    p.add_argument("--precision", nargs="+", choices=tuple(DTYPES), default=list(DTYPES))
    p.add_argument("--compile", nargs="*", choices=("off", "on"), default=["off"],
                   help="alone: torch.compile on; 'off on': both")
    p.add_argument("--vocab", type=int, default=13000)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation lands here)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data-batch", type=int, default=128)
    p.add_argument("--data-questions", type=int, default=1000)
    p.add_argument("--data-qpi", type=int, default=5, help="questions per generated image (1-8)")
    p.add_argument("--no-model", action="store_true")
    p.add_argument("--no-data", action="store_true")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N training steps (torch.profiler) and print the costliest ops")
    p.add_argument("--workdir", default="runs/bench")
    p.add_argument("--out", default=None, help="default: WORKDIR/bench.json")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a config as JSON: measure it, print JSON
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(json.loads(a.one))))
        return
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    torch.set_num_threads(a.threads)
    report: dict[str, Any] = {"environment": environment(device, a.threads), "matmul_gflops": {},
                              "model": [], "data": []}
    if not a.no_model:
        for variant, answers, batch, qpi, precision, comp in itertools.product(
                a.variants, a.answers, a.batch, a.qpi, a.precision, a.compile or ["on"]):
            cfg = {"variant": variant, "answers": answers, "batch": batch, "qpi": qpi,
                   "precision": precision, "compile": comp, "device": device, "threads": a.threads,
                   "vocab": a.vocab, "steps": a.steps, "warmup": a.warmup, "profile": a.profile}
            print(f"model: {json.dumps(cfg)}", file=sys.stderr, flush=True)
            report["model"].append(run_config(cfg))
        report["matmul_gflops"] = {p: matmul_gflops(device, DTYPES[p]) for p in a.precision}
    if not a.no_data:
        root = Path(a.workdir) / f"data-{a.data_questions}q-{a.data_qpi}qpi"
        for name, split in bench_splits(root, a.data_questions, a.data_qpi).items():
            print(f"data: {name}", file=sys.stderr, flush=True)
            report["data"].append({"source": name, **loader_rate(split, a.workers, a.data_batch)})
        report["finite_check"] = finite_check_cost(root / "features")

    env = report["environment"]
    rates = ", ".join(f"{'fp32' if k == '32' else k} {v:.0f}" for k, v in report["matmul_gflops"].items())
    print(f"\nDevice: {env['device_name']} ({device}), torch {env['torch']}, {a.threads} threads"
          + (f", matmul GFLOP/s: {rates}" if rates else "") + f", {env['date']}\n")
    if report["model"]:
        print(model_table(report["model"], report["matmul_gflops"], device) + "\n")
    for r in report["model"]:
        if r.get("profile"):
            prof = r["profile"]
            print(f"Profile of {r['variant']}, batch {r['batch']}, {r['qpi']} q/img, {r['precision']}:"
                  f" {prof['total_ms'] / prof['steps']:.1f} ms of operator self time a training step,"
                  f" {100 * prof['matmul_share']:.1f} % of it in matrix products\n")
            print(markdown(["operator", "ms / step", "share %", "calls / step"],
                           [[o["op"], f"{o['ms_per_step']:.1f}", f"{100 * o['share']:.1f}",
                             f"{o['calls_per_step']:.0f}"] for o in prof["top"]]) + "\n")
    if report["data"]:
        print(markdown(["data source", "workers", "batch", "questions/s", "images/s"],
                       [[d["source"], d["workers"], d["batch"], f"{d['samples_s']:.1f}",
                         f"{d['images_s']:.1f}"] for d in report["data"]]))
    if "finite_check" in report:
        f = report["finite_check"]
        print(f"\nFinite-feature check, batch of {f['batch']} cached {f['shape'][0]} x "
              f"{f['shape'][1]} float16 rows: read {f['read_ms']:.1f} ms, read + check "
              f"{f['read_checked_ms']:.1f} ms (+{f['check_ms']:.1f} ms per batch)")
    out = a.out or str(Path(a.workdir) / "bench.json")
    write_json(out, report, indent=1)
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
