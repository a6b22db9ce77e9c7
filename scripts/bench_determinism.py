"""Benchmark: are a config's runs bit-reproducible, with and without ``trainer.deterministic``, and
what does deterministic mode cost in speed?

For each mode the config is trained twice with ``vqa fit`` (same seed, same data order, a fresh
folder each time). The two runs' ``last.ckpt`` weights are compared bit for bit, their logged
training losses step by step (the first step where they differ is printed), and the training
questions/s of ``summary.json`` are averaged. Runs go one after another, so their speeds compare.

    python scripts/bench_determinism.py -c configs/shapes/alternating.yaml [-c OVERLAY]
        [--epochs 2] [--repeats 2] [--workdir runs/bench/determinism] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from vqa._io import read_json, write_json


def fit(configs: list[str], folder: Path, deterministic: bool, epochs: int, seed: int) -> None:
    """One ``vqa fit`` into ``folder`` (replaced), its output in ``folder/fit.log``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "vqa.cli", "fit", *[a for c in configs for a in ("-c", c)],
           f"--trainer.deterministic={str(deterministic).lower()}", f"--trainer.max_epochs={epochs}",
           f"--seed_everything={seed}", f"--data.seed={seed}",
           f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with open(folder / "fit.log", "w") as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode:
            sys.exit(f"error: {' '.join(cmd)} failed, see {folder / 'fit.log'}")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def losses(folder: Path) -> dict[int, str]:
    """Logged training loss by step, as written (text compares bit for bit at CSV precision)."""
    out = {}
    for path in sorted(folder.glob("logs/version_*/metrics.csv")):
        with open(path, newline="") as f:
            out |= {int(r["step"]): r["train/loss"] for r in csv.DictReader(f) if r.get("train/loss")}
    return out


def compare(a: Path, b: Path) -> dict[str, Any]:
    wa, wb = weights(a), weights(b)
    max_diff = max(((wa[k].float() - wb[k].float()).abs().max().item() for k in wa), default=0.0)
    la, lb = losses(a), losses(b)
    first = next((s for s in sorted(la) if la[s] != lb.get(s)), None)
    return {"identical": all(torch.equal(wa[k], wb[k]) for k in wa), "max_weight_diff": max_diff,
            "first_loss_difference_step": first, "logged_steps": len(la)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--config", action="append", required=True, help="config (repeatable)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs per mode (compared to the first)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="runs/bench/determinism")
    p.add_argument("--out", default=None, help="default: WORKDIR/determinism.json")
    args = p.parse_args()
    work = Path(args.workdir)
    rows = []
    for deterministic in (False, True):
        folders = [work / f"deterministic_{deterministic}" / f"run{i}" for i in range(args.repeats)]
        for folder in folders:
            fit(args.config, folder, deterministic, args.epochs, args.seed)
        speeds = [read_json(f / "summary.json")["train_questions_per_second"] for f in folders]
        diffs = [compare(folders[0], f) for f in folders[1:]]
        rows.append({"deterministic": deterministic, "identical": all(d["identical"] for d in diffs),
                     "comparisons": diffs, "train_questions_per_second": speeds,
                     "mean_questions_per_second": statistics.mean(speeds)})
    off, on = rows
    result = {"configs": args.config, "epochs": args.epochs, "repeats": args.repeats,
              "seed": args.seed, "speed_cost_percent":
              100 * (1 - on["mean_questions_per_second"] / off["mean_questions_per_second"]),
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "torch": str(torch.__version__), "cpu": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(),
              "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "modes": rows}
    write_json(Path(args.out or work / "determinism.json"), result)
    device = result["cuda"] or f"CPU, {result['threads']} threads"
    print(f"`{' '.join(['python', *sys.argv])}`, {result['date']}, torch {result['torch']}, "
          f"{device}, {args.epochs} epochs\n")
    print("| deterministic | runs bit-identical | max weight difference | first differing "
          "logged loss (step) | train questions/s |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        d = r["comparisons"][0]
        print(f"| {r['deterministic']} | {r['identical']} | {d['max_weight_diff']:.3g} | "
              f"{d['first_loss_difference_step'] or 'none'} of {d['logged_steps']} | "
              + " / ".join(f"{s:.0f}" for s in r["train_questions_per_second"]) + " |")
    print(f"\nDeterministic mode costs {result['speed_cost_percent']:.1f} % of training speed.")


if __name__ == "__main__":
    main()
