"""``vqa study``: every combination of experiment configs, overlays and seeds, each run in its own
folder, then one table (``vqa.experiments.table``).

A study is a grid: ``--configs`` (experiment configs, one per dataset or base setting) x
``--overlays`` (changes to compare; ``base`` is the config alone) x ``--seeds``. Run ``i`` is
``vqa fit -c CONFIG [-c OVERLAY] --seed_everything S --data.seed S`` (the seed sets the
initialisation, dropout and the data order) into ``OUT/CONFIG/OVERLAY/seedS``. The
grid is saved as ``OUT/study.json``; every later command on the folder reads it from there.

Local execution runs ``--jobs`` runs at a time (each in a subprocess, its output in the run's
``fit.log``; with several GPUs, one GPU per slot). Interrupted, the same command resumes: a run
with a ``summary.json`` is finished and never repeated, one with a ``last.ckpt`` continues from
it (``--ckpt_path last``), and any other starts over. Clusters run the same runs through their
own engine: ``--slurm`` writes a job-array script, ``--wandb-sweep`` a sweep file for ``wandb
agent``; each task runs ``vqa study --out OUT --task I``, and ``vqa study --out OUT --table``
gathers the table afterwards. W&B runs are grouped by study (``group``), overlay
(``job_type``) and tagged with config, overlay and seed.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vqa._io import atomic_open, read_json, write_json

FORMAT = "vqa-study/1"
BASE = "base"  # the overlay name of "the config alone"


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    index: int
    config: str  # the experiment config's name (its file's stem; parent folder if ambiguous)
    overlay: str  # the overlay's name, or ``base``
    seed: int
    files: tuple[str, ...]  # the config files, in the order ``vqa fit -c`` reads them

    def folder(self, out: Path) -> Path:
        return out / self.config / self.overlay / f"seed{self.seed}"


@dataclass
class Study:
    """The grid, as saved in ``OUT/study.json``.

    Args:
        name: the study's name (the W&B group); default the output folder's name.
        configs: experiment config files.
        overlays: overlay files compared on each config; ``base`` is the config alone.
        seeds: seeds, each set as ``--seed_everything`` and ``--data.seed``.
        args: further ``vqa fit`` arguments given to every run.
    """

    name: str
    configs: list[str]
    overlays: list[str] = field(default_factory=lambda: [BASE])
    seeds: list[int] = field(default_factory=lambda: [0])
    args: list[str] = field(default_factory=list)

    def runs(self) -> list[Run]:
        configs = _names(self.configs)
        overlays = _names([o for o in self.overlays if o != BASE])
        runs = []
        for c in self.configs:
            for o in self.overlays:
                for s in self.seeds:
                    files = (c,) if o == BASE else (c, o)
                    runs.append(Run(len(runs), configs[c], BASE if o == BASE else overlays[o],
                                    s, files))
        return runs

    def save(self, out: Path) -> None:
        write_json(out / "study.json", {"format": FORMAT, **asdict(self)}, indent=2)

    @classmethod
    def load(cls, out: Path) -> Study:
        data = read_json(out / "study.json")
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise ValueError(f"{out / 'study.json'}: not a study (expected format {FORMAT!r})")
        return cls(**data)


def _names(files: Sequence[str]) -> dict[str, str]:
    """A short name per config file: its stem, or ``parent-stem`` where stems repeat
    (``configs/shapes/parallel.yaml`` and ``configs/vqa2/parallel.yaml``)."""
    stems = [Path(f).stem for f in files]
    return {f: (f"{Path(f).parent.name}-{Path(f).stem}" if stems.count(Path(f).stem) > 1
                else Path(f).stem) for f in files}


def state(run: Run, out: Path) -> str:
    """``done`` (its ``summary.json`` exists), ``resume`` (a ``last.ckpt``) or ``new``."""
    folder = run.folder(out)
    if (folder / "summary.json").is_file():
        return "done"
    if (folder / "checkpoints" / "last.ckpt").is_file():
        return "resume"
    return "new"


def command(study: Study, run: Run, out: Path) -> list[str]:
    """The ``vqa fit`` arguments of ``run``, resuming it when it has a ``last.ckpt`` (a run
    without one starts over in its folder: it holds nothing to continue)."""
    folder = run.folder(out)
    args = ["fit", *(a for f in run.files for a in ("-c", f)), *study.args,
            "--seed_everything", str(run.seed), "--data.seed", str(run.seed),
            "--trainer.default_root_dir", str(folder)]
    how = state(run, out)
    return args + (["--ckpt_path", "last"] if how == "resume" else ["--overwrite"])


def environment(study: Study, run: Run) -> dict[str, str]:
    """W&B grouping of ``run`` (read by ``wandb.init`` from the environment)."""
    return {"WANDB_RUN_GROUP": study.name, "WANDB_JOB_TYPE": run.overlay,
            "WANDB_TAGS": ",".join([run.config, run.overlay, f"seed{run.seed}"])}


def run_one(study: Study, run: Run, out: Path, gpu: int | None = None) -> subprocess.Popen:
    """Start ``run`` in a subprocess writing to its ``fit.log``."""
    folder = run.folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **environment(study, run)}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    args = [sys.executable, "-m", "vqa.cli", *command(study, run, out)]
    log = open(folder / "fit.log", "a")  # noqa: SIM115 (the child writes it; closed in `execute`)
    log.write(f"\n$ {shlex.join(args[2:])}\n")
    log.flush()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def execute(study: Study, out: Path, jobs: int = 1, only: Sequence[int] | None = None) -> list[str]:
    """Run every unfinished run (or those numbered ``only``), ``jobs`` at a time; returns the
    failures (``"run 3 (config/overlay/seed1): exit 1, see .../fit.log"``)."""
    runs = [r for r in study.runs() if only is None or r.index in only]
    todo = [r for r in runs if state(r, out) != "done"]
    for r in runs:
        if state(r, out) == "done":
            print(f"run {r.index} {_label(r)}: finished earlier", flush=True)
    gpus = _gpus()
    slots: dict[int, tuple[Run, subprocess.Popen]] = {}
    failures: list[str] = []
    stopped: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        """A scheduler's SIGTERM (or Ctrl-C) reaches the runs, which save ``last.ckpt``; no
        new run starts, and the study exits like its runs (143, 130) once they have."""
        stopped.append(signum)
        todo.clear()
        for _, proc in slots.values():
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        _loop(study, out, jobs, todo, slots, gpus, failures)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopped:
        raise SystemExit(128 + stopped[0])
    return failures


def _loop(study: Study, out: Path, jobs: int, todo: list[Run],
          slots: dict[int, tuple[Run, subprocess.Popen]], gpus: list[int],
          failures: list[str]) -> None:
    while todo or slots:
        while todo and len(slots) < jobs:
            slot = next(i for i in range(jobs) if i not in slots)
            r = todo.pop(0)
            print(f"run {r.index} {_label(r)}: {state(r, out)}, log {r.folder(out) / 'fit.log'}",
                  flush=True)
            slots[slot] = (r, run_one(study, r, out, gpus[slot % len(gpus)] if gpus else None))
        time.sleep(0.2)
        for slot, (r, proc) in list(slots.items()):
            if proc.poll() is None:
                continue
            proc.log.close()  # type: ignore[attr-defined]
            del slots[slot]
            if proc.returncode == 0 and state(r, out) == "done":
                print(f"run {r.index} {_label(r)}: finished", flush=True)
            else:
                failures.append(f"run {r.index} ({_label(r)}): exit {proc.returncode}, see "
                                f"{r.folder(out) / 'fit.log'}")
                print(failures[-1], flush=True)


def _label(run: Run) -> str:
    return f"{run.config}/{run.overlay}/seed{run.seed}"


def _gpus() -> list[int]:
    """The visible GPUs (``[]`` on a CPU machine); one per concurrent run."""
    try:
        import torch
    except ImportError:
        return []
    return list(range(torch.cuda.device_count()))


def slurm_script(study: Study, out: Path, options: Sequence[str] = ()) -> str:
    """A SLURM job array with one task per run; each task runs ``vqa study --task I`` (resumable
    and requeued on preemption: SIGTERM saves ``last.ckpt``). ``options`` are extra
    ``#SBATCH`` lines (``--gres=gpu:1``, ``--time=4:00:00``)."""
    n = len(study.runs())
    lines = ["#!/bin/bash", f"#SBATCH --job-name={study.name}", f"#SBATCH --array=0-{n - 1}",
             f"#SBATCH --output={out}/slurm-%A_%a.out", "#SBATCH --requeue",
             "#SBATCH --signal=B:TERM@120", *(f"#SBATCH {o}" for o in options), "",
             f"# {n} runs of study {study.name}; afterwards: vqa study --out {out} --table",
             f"exec vqa study --out {shlex.quote(str(out))} --task \"$SLURM_ARRAY_TASK_ID\""]
    return "\n".join(lines) + "\n"


def wandb_sweep(study: Study, out: Path) -> dict[str, Any]:
    """A W&B grid sweep over the run numbers; ``wandb agent`` starts ``vqa study --task I``."""
    n = len(study.runs())
    return {"name": study.name, "method": "grid",
            "parameters": {"task": {"values": list(range(n))}},
            "command": ["${env}", "vqa", "study", "--out", str(out), "${args}"]}


def write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)
