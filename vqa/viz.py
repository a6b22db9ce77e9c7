"""Pure rendering of attention maps: heatmap overlays, word-attention HTML, matplotlib figures.

The same functions serve W&B tables, PNG export and notebooks. Image attention over N = h x w
regions is row-major: region ``r * w + c`` is grid cell (r, c), which covers rows
``[r H / h, (r + 1) H / h)`` and columns ``[c W / w, (c + 1) W / w)`` of the image as the model saw
it (resized to the model's input size).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import torch


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, np.float32)


def attention_to_pixels(attention: torch.Tensor | np.ndarray, grid: tuple[int, int],
                        size: tuple[int, int]) -> np.ndarray:
    """Region attention (N,) -> (H, W) map where every pixel holds its grid cell's weight."""
    h, w = grid
    a = _numpy(attention).reshape(h, w)  # (N,) -> (h, w), row-major
    rows = np.arange(size[0]) * h // size[0]  # (H,) grid row of each pixel row
    cols = np.arange(size[1]) * w // size[1]  # (W,)
    return a[rows[:, None], cols[None, :]]  # (H, W)


def overlay(image: np.ndarray, attention: torch.Tensor | np.ndarray, grid: tuple[int, int],
            alpha: float = 0.6) -> np.ndarray:
    """Blend a heatmap of region attention (N,) over an (H, W, 3) uint8 image -> (H, W, 3) uint8.

    The map is scaled to its maximum, so the most attended cell is the hottest; colours run from
    dark blue (none) to yellow (most), the image shows through in proportion to ``1 - alpha``.
    """
    heat = attention_to_pixels(attention, grid, image.shape[:2])
    heat = heat / max(float(heat.max()), 1e-12)  # (H, W) in [0, 1]
    colour = np.stack([heat, heat ** 2, 0.4 * (1 - heat)], -1)  # (H, W, 3): blue -> yellow
    out = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def words_html(tokens: Sequence[str], weights: torch.Tensor | np.ndarray,
               label: str | None = None) -> str:
    """Tokens as HTML spans with a background whose opacity is the word's attention (scaled to the
    maximum); the weight is in each span's title."""
    w = _numpy(weights)[: len(tokens)]
    top = max(float(w.max()), 1e-12) if len(w) else 1.0
    spans = [f'<span title="{float(x):.3f}" style="background: rgba(255, 140, 0, '
             f'{float(x) / top:.2f}); padding: 0 2px">{html.escape(t)}</span>'
             for t, x in zip(tokens, w, strict=False)]
    head = f"<b>{html.escape(label)}</b>: " if label else ""
    return f"<div>{head}{' '.join(spans)}</div>"


def figure(image: np.ndarray, image_attention: torch.Tensor | np.ndarray,
           question_attention: torch.Tensor | np.ndarray, tokens: Sequence[str],
           grid: tuple[int, int], levels: Sequence[str], title: str = ""):
    """A matplotlib figure: the image, its attention overlay at each level (L, N), and a bar chart
    of the word attention at each level (L, T). Built without pyplot, so it neither changes the
    backend nor stays open: save it with ``savefig`` or show it with ``display`` in a notebook."""
    from matplotlib.figure import Figure

    a_v, a_q = _numpy(image_attention), _numpy(question_attention)[:, : len(tokens)]
    n = len(levels)
    fig = Figure(figsize=(3 * (n + 1), 5.5))
    axes = fig.subplots(2, n + 1, gridspec_kw={"height_ratios": [3, 2]})
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image")
    for i, level in enumerate(levels):
        axes[0, i + 1].imshow(overlay(image, a_v[i], grid))
        axes[0, i + 1].set_title(f"{level} level")
        ax = axes[1, i + 1]
        ax.bar(range(len(tokens)), a_q[i], color="darkorange")
        ax.set_xticks(range(len(tokens)), tokens, rotation=60, fontsize=8)
        ax.set_ylim(0, 1)
    for ax in axes[0]:
        ax.axis("off")
    axes[1, 0].axis("off")
    axes[1, 0].text(0, 0.5, title, wrap=True, fontsize=9, va="center")
    fig.tight_layout()
    return fig
