"""Memory of converting and reading region features: a generated bottom-up-attention TSV of N
images (36 boxes of 2048-d features each, as the 36-box release), converted with
`vqa convert-features`, then every image read once in a shuffled order through the training
data path (``CachedFeatures`` + ``collate``, batches of 64 images).

Prints, for the conversion and for the reading (each in its own process): the peak resident
memory, and the anonymous (heap) and file-backed parts of the resident memory at the end. Pages
of the memory-mapped cache count as file-backed: the kernel drops them under pressure.

    python scripts/bench_regions.py --images 2000 20000 --folder /tmp/regions
"""

from __future__ import annotations

import argparse
import base64
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BOXES, DIM = 36, 2048


def write_tsv(path: Path, n: int) -> None:
    """N lines of the release's layout; one random block of features reused (writing speed)."""
    rng = np.random.default_rng(0)
    feats = base64.b64encode(rng.normal(0, 1, (BOXES, DIM)).astype(np.float32).tobytes()).decode()
    boxes = np.tile(np.array([[10, 20, 200, 300]], np.float32), (BOXES, 1))
    b = base64.b64encode(boxes.tobytes()).decode()
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"{i + 1}\t640\t480\t{BOXES}\t{b}\t{feats}\n")


def status() -> dict[str, int]:
    """RssAnon and RssFile of this process, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) // 1024
    return out


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux -> MiB


def convert(tsv: Path, out: Path) -> None:
    from vqa.cli import main

    start = time.perf_counter()
    main(["convert-features", "--format", "tsv", "--source", str(tsv), "--out", str(out),
          "--max-boxes", str(BOXES)])
    print(f"convert: {time.perf_counter() - start:.0f} s, peak RSS {peak()} MiB, at the end "
          f"{status()}")


def read(out: Path) -> None:
    import torch

    from vqa.data.batch import collate
    from vqa.data.dataset import CachedFeatures
    from vqa.data.regions import RegionCache

    source = CachedFeatures([RegionCache(out)])
    ids = list(source.caches[0].row)
    order = np.random.default_rng(0).permutation(len(ids))
    start = time.perf_counter()
    for s in range(0, len(ids), 64):
        items = [{**source[ids[i]], "image_id": ids[i], "question": torch.zeros(1),
                  "question_mask": torch.ones(1, dtype=torch.bool), "question_id": i,
                  "target": torch.zeros(1), "answer_index": 0, "groups": torch.zeros(1),
                  "extra": {}}
                 for i in order[s:s + 64]]
        collate(items)
    print(f"read: {len(ids)} images in {time.perf_counter() - start:.0f} s, peak RSS {peak()} MiB, "
          f"at the end {status()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--folder", default="/tmp/regions-bench")
    p.add_argument("--step", choices=("convert", "read"), help=argparse.SUPPRESS)
    p.add_argument("--tsv", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.step == "convert":
        return convert(Path(a.tsv), Path(a.out))
    if a.step == "read":
        return read(Path(a.out))
    folder = Path(a.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for n in a.images:
        tsv, out = folder / f"{n}.tsv", folder / f"cache-{n}"
        write_tsv(tsv, n)
        print(f"{n} images: TSV {tsv.stat().st_size / 2**30:.2f} GiB", flush=True)
        for step in ("convert", "read"):
            subprocess.run([sys.executable, __file__, "--step", step, "--tsv", str(tsv),
                            "--out", str(out)], check=True)
        tsv.unlink()


if __name__ == "__main__":
    main()
