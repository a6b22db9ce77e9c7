"""The study table: each (config, overlay) over its seeds, from the runs' ``summary.json``.

Every number is the mean and sample standard deviation (``ddof=1``) over the seeds that finished,
with ``n``, the count of those seeds, beside it. Metrics are the validation metrics of each run's
best epoch (``RunSummary``): the benchmark's headline accuracy, each of its categories, and
grounding where the dataset has it; ``grounding/best/pointing`` is a run's best level's pointing.
``table.md`` shows accuracy, categories and pointing; ``table.csv`` holds every metric, and
``runs.csv`` every run.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vqa._io import atomic_open, atomic_save, read_json
from vqa.experiments.study import Run

COST = ("parameters", "train_questions_per_second", "wall_seconds")


def run_row(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """One run's metrics (``val/`` dropped from the names) and costs."""
    best = {k.removeprefix("val/"): v for k, v in summary["best"].items()
            if k not in ("epoch", "step", "val/loss")}
    pointing = {k: v for k, v in best.items() if _map_pointing(k)}
    if pointing:
        top = max(pointing, key=pointing.get)
        best["grounding/best/pointing"] = pointing[top]
        best["grounding/best/map"] = top.split("/")[1]
    return {"config": run.config, "overlay": run.overlay, "seed": run.seed,
            "monitor": (summary.get("monitor") or "").removeprefix("val/"),
            "best_epoch": summary["best"].get("epoch"), **best,
            **{k: summary.get(k) for k in COST}}


def _map_pointing(key: str) -> bool:
    """``grounding/{map}/pointing``: a map's pointing over every question (not per family)."""
    parts = key.split("/")
    return len(parts) == 3 and parts[0] == "grounding" and parts[2] == "pointing"


def gather(runs: Sequence[Run], out: Path) -> list[dict[str, Any]]:
    """The rows of the runs that finished (``summary.json``), in grid order."""
    rows = []
    for r in runs:
        path = r.folder(out) / "summary.json"
        if path.is_file():
            rows.append(run_row(r, read_json(path)))
    return rows


def _stats(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (config, overlay): ``n``, the seeds, and ``KEY_mean`` / ``KEY_std`` of every metric
    and cost (std ``None`` for one seed)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["config"], r["overlay"]), []).append(r)
    out = []
    for (config, overlay), members in groups.items():
        agg: dict[str, Any] = {"config": config, "overlay": overlay, "n": len(members),
                               "seeds": " ".join(str(m["seed"]) for m in members),
                               "monitor": members[0]["monitor"]}
        keys = [k for k in members[0] if k not in ("config", "overlay", "seed", "monitor")]
        for k in keys:
            values = [m[k] for m in members if isinstance(m.get(k), int | float)]
            if values:
                agg[f"{k}_mean"], agg[f"{k}_std"] = _stats([float(v) for v in values])
        out.append(agg)
    return out


def _pm(row: dict[str, Any], key: str, digits: int = 2) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def markdown(table: list[dict[str, Any]], header: str = "") -> str:
    """Accuracy, its categories and pointing per level as mean ± std, with n; then costs."""
    if not table:
        return header + "No run has finished yet.\n"
    monitor = table[0]["monitor"]
    keys = list(dict.fromkeys(k.removesuffix("_mean") for row in table for k in row
                              if k.endswith("_mean")))
    categories = [k for k in keys if k.startswith(f"{monitor}/")]
    # Each row's best map, "none" for a row without maps (the no-attention baseline); then
    # per-map pointing for the maps every row has (a HieCoAtt table's levels). table.csv has
    # every map.
    best = "grounding/best/pointing"
    common = set.intersection(*({k for k in row if k.endswith("_mean")} for row in table))
    pointing = [best] * (best in keys) + sorted(
        k for k in keys if _map_pointing(k) and k != best and f"{k}_mean" in common)
    columns = [monitor, *categories, *pointing]
    names = ["config", "overlay", "n", *columns, "parameters", "train q/s", "wall min"]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    for row in table:
        wall = row.get("wall_seconds_mean")
        cells = [row["config"], row["overlay"], str(row["n"]),
                 *(_pm(row, c) or ("none" if c in pointing else "") for c in columns),
                 f"{row.get('parameters_mean', 0):,.0f}", _pm(row, "train_questions_per_second", 0),
                 f"{wall / 60:.1f}" if wall is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as f:
        f.write(buffer.getvalue())


def plot(table: list[dict[str, Any]], path: Path) -> None:
    """Accuracy (mean ± std over seeds) against wall time per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    monitor = table[0]["monitor"] if table else "accuracy"
    for row in table:
        std = row.get(f"{monitor}_std")
        ax.errorbar(row["wall_seconds_mean"] / 60, row[f"{monitor}_mean"],
                    yerr=0 if std is None else std, fmt="o", capsize=4,
                    label=f"{row['config']}/{row['overlay']} (n={row['n']})")
    ax.set_xlabel("wall time per run (min)")
    ax.set_ylabel(f"{monitor} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def write_tables(runs: Sequence[Run], out: Path, header: str = "") -> list[dict[str, Any]]:
    """``table.md``, ``table.csv``, ``runs.csv`` and ``accuracy_vs_time.png`` in ``out``."""
    rows = gather(runs, out)
    table = aggregate(rows)
    with atomic_open(out / "table.md") as f:
        f.write(markdown(table, header))
    write_csv(out / "table.csv", table)
    write_csv(out / "runs.csv", rows)
    if table and all(not math.isnan(r.get("wall_seconds_mean", math.nan)) for r in table):
        plot(table, out / "accuracy_vs_time.png")
    return table
