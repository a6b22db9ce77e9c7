"""Which attention map grounds which question family: pointing accuracy per map and family.

Reads each run's ``summary.json`` (written by ``vqa fit``; the metrics of its best epoch) and prints
a table per run: one row per map, one column per question family, the family's best map in bold,
and the map's pointing over all questions at the end. A model whose levels share the families
out scores low on every single map although each family has a map that points well.

    python scripts/family_pointing.py RUN_DIR_OR_SUMMARY [...]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vqa._io import read_json

KEY = re.compile(r"val/grounding/([^/]+)/([^/]+)/pointing$")


def table(best: dict[str, float]) -> str:
    """Markdown table of ``val/grounding/{map}/{family}/pointing`` from one epoch's metrics."""
    cells: dict[str, dict[str, float]] = {}
    for key, value in best.items():
        if (m := KEY.match(key)) and value is not None:
            cells.setdefault(m[1], {})[m[2]] = value
    if not cells:
        raise ValueError("no per-family pointing (val/grounding/{map}/{family}/pointing) in it")
    families = sorted({f for row in cells.values() for f in row})
    top = {f: max(cells, key=lambda m: cells[m].get(f, -1.0)) for f in families}
    lines = ["| map | " + " | ".join(families) + " | all |", "|---" * (len(families) + 2) + "|"]
    for name, row in cells.items():
        shown = [f"**{row[f]:.1f}**" if top[f] == name else f"{row[f]:.1f}" if f in row else ""
                 for f in families]
        overall = best.get(f"val/grounding/{name}/pointing")
        lines.append(f"| {name} | " + " | ".join(shown)
                     + f" | {'' if overall is None else f'{overall:.2f}'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders or their summary.json")
    for given in p.parse_args().runs:
        path = Path(given)
        path = path / "summary.json" if path.is_dir() else path
        best = read_json(path)["best"]
        try:
            rows = table(best)
        except ValueError as error:
            sys.exit(f"{path}: {error}")
        print(f"{path.parent} (epoch {best.get('epoch')}, val/vqa_acc "
              f"{best.get('val/vqa_acc', float('nan')):.2f})\n\n{rows}\n")


if __name__ == "__main__":
    main()
