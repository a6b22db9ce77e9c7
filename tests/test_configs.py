"""The configs compose instead of repeating: each file names a run folder at most once, and no
block of six or more lines stands in two config files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def lines(path: Path) -> list[str]:
    """The file's lines without comments and blank lines, white space folded."""
    out = []
    for line in path.read_text().splitlines():
        code = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if code.strip():
            out.append(" ".join(code.split()))
    return out


def test_each_config_names_its_run_folder_at_most_once() -> None:
    assert len(CONFIGS) > 20
    for path in CONFIGS:
        named = [line for line in lines(path) if "runs/" in line]
        assert len(named) <= 1, (path, named)
        assert all(line.startswith("default_root_dir:") for line in named), (path, named)


def test_no_block_of_six_lines_is_repeated() -> None:
    seen: dict[tuple[str, ...], Path] = {}
    repeated = []
    for path in CONFIGS:
        body = lines(path)
        for i in range(len(body) - 5):
            block = tuple(body[i:i + 6])
            if seen.setdefault(block, path) != path:
                repeated.append(f"{path.relative_to(ROOT)} repeats {seen[block].relative_to(ROOT)}:"
                                f" {block}")
    assert not repeated, "\n".join(repeated)
