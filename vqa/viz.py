"""Pure rendering of attention maps: heatmap overlays, word-attention HTML, matplotlib figures.

The same functions serve W&B tables, PNG export and notebooks. Image attention over N = h x w
regions is row-major: region ``r * w + c`` is grid cell (r, c), which covers rows
``[r H / h, (r + 1) H / h)`` and columns ``[c W / w, (c + 1) W / w)`` of the image as the model saw
it (resized to the model's input size). Attention over boxes (region features) takes the boxes
instead of the grid: (N, 4) ``(x1, y1, x2, y2)`` over the image's width and height.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import torch

from vqa.models.attention import MapNames


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


Layout = tuple[int, int] | np.ndarray | torch.Tensor  # a grid (h, w), or boxes (N, 4) in [0, 1]


def _upscaled(image: np.ndarray, at_least: int = 256) -> np.ndarray:
    """A small image repeated to at least ``at_least`` pixels a side (nearest neighbour: pixels
    stay sharp), so that box outlines and labels drawn over it are legible in figures."""
    factor = -(-at_least // max(min(image.shape[:2]), 1))
    return image.repeat(factor, 0).repeat(factor, 1) if factor > 1 else image


def _colour(heat: np.ndarray) -> np.ndarray:
    """Weights scaled to [0, 1] (...,) -> RGB in [0, 1] (..., 3): dark blue (none) to yellow."""
    return np.stack([heat, heat ** 2, 0.4 * (1 - heat)], -1)


def overlay(image: np.ndarray, attention: torch.Tensor | np.ndarray, layout: Layout,
            alpha: float = 0.6, labelled: int = 3) -> np.ndarray:
    """Draw region attention (N,) over an (H, W, 3) uint8 image -> (H, W, 3) uint8.

    On a grid, a heatmap: each cell coloured by its weight. Over boxes, each box outlined and
    filled in the colour of its weight (the most attended drawn last, on top), the ``labelled``
    most attended boxes with their weight. Weights are scaled to their maximum, so the most
    attended region is the hottest; the image shows through in proportion to ``1 - alpha``.
    """
    if isinstance(layout, tuple | list):
        heat = attention_to_pixels(attention, tuple(layout), image.shape[:2])
        heat = heat / max(float(heat.max()), 1e-12)  # (H, W) in [0, 1]
        out = (1 - alpha) * image.astype(np.float32) / 255 + alpha * _colour(heat)
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    return _boxes_overlay(image, _numpy(attention), _numpy(layout), alpha, labelled)


def _boxes_overlay(image: np.ndarray, a: np.ndarray, boxes: np.ndarray, alpha: float,
                   labelled: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape[:2]
    font = ImageFont.load_default(size=max(10, min(h, w) // 16))
    heat = a / max(float(a.max()), 1e-12)  # (N,) in [0, 1]
    base = Image.fromarray((image.astype(np.float32) * (1 - alpha * 0.5)).astype(np.uint8))
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    order = np.argsort(heat, kind="stable")  # least attended first: the top boxes end on top
    top = set(order[::-1][:labelled].tolist())
    for i in order:
        if not boxes[i].any():  # padding (boxes of other images in the batch)
            continue
        rgb = tuple(int(c * 255) for c in _colour(heat[i]))
        x1, y1, x2, y2 = (boxes[i] * [w, h, w, h]).tolist()
        draw.rectangle((x1, y1, x2, y2), fill=(*rgb, int(255 * alpha * 0.6 * heat[i])),
                       outline=(*rgb, 255), width=2 if i in top else 1)
        if i in top:
            draw.text((x1 + 2, y1 + 1), f"{a[i]:.2f}", fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB"))


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
           grid: Layout, maps: MapNames, title: str = ""):
    """A matplotlib figure: the image, then one column per map of ``maps``: its overlay over the
    image (``image_attention`` (M_v, N), rows ``maps.regions``, on the ``grid`` or boxes) and a bar
    chart of its word attention (``question_attention`` (M_q, T), rows ``maps.words``); a side a
    map lacks reads "none". Built without pyplot, so it neither changes the backend nor stays
    open: save it with ``savefig`` or show it with ``display`` in a notebook."""
    from matplotlib.figure import Figure

    a_v, a_q = _numpy(image_attention), _numpy(question_attention)[:, : len(tokens)]
    image, names = _upscaled(image), maps.names
    fig = Figure(figsize=(3 * (len(names) + 1), 5.5))
    axes = fig.subplots(2, len(names) + 1, gridspec_kw={"height_ratios": [3, 2]}, squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image" if names else "image (no attention maps)")
    for i, name in enumerate(names):
        top, bottom = axes[0, i + 1], axes[1, i + 1]
        top.set_title(name)
        if name in maps.regions:
            top.imshow(overlay(image, a_v[maps.regions.index(name)], grid))
        else:
            _none(top, "no map over regions")
        if name in maps.words:
            bottom.bar(range(len(tokens)), a_q[maps.words.index(name)], color="darkorange")
            bottom.set_xticks(range(len(tokens)), tokens, rotation=60, fontsize=8)
            bottom.set_ylim(0, 1)
        else:
            _none(bottom, "no map over words")
    for ax in axes[0]:
        ax.axis("off")
    axes[1, 0].axis("off")
    axes[1, 0].text(0, 0.5, title, wrap=True, fontsize=9, va="center")
    fig.tight_layout()
    return fig


def _none(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, f"none\n({text})", ha="center", va="center", fontsize=9, color="grey")


def side_by_side(rows: Sequence[tuple[str, np.ndarray, torch.Tensor | np.ndarray, Layout,
                                       MapNames]], title: str = ""):
    """Several models' region maps for one question: one row per model, ``(label, image (H, W,
    3) as it saw it, image_attention (M_v, N), grid or boxes, maps)``: the image, then each of its maps
    over regions (a model without any shows "none")."""
    from matplotlib.figure import Figure

    width = max([len(m.regions) for *_, m in rows] + [1]) + 1
    fig = Figure(figsize=(2.6 * width, 2.8 * len(rows)))
    axes = fig.subplots(len(rows), width, squeeze=False)
    for r, (label, image, attention, grid, maps) in enumerate(rows):
        image = _upscaled(image)
        axes[r, 0].imshow(image)
        axes[r, 0].set_title(label, fontsize=9)
        a = _numpy(attention)
        for i in range(1, width):
            ax = axes[r, i]
            ax.axis("off")
            if i - 1 < len(maps.regions):
                ax.imshow(overlay(image, a[i - 1], grid))
                ax.set_title(maps.regions[i - 1], fontsize=9)
            elif i == 1:
                _none(ax, "no map over regions")
        axes[r, 0].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
