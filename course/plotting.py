"""Small plotting helpers shared by the labs' demos (matplotlib, no screen needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")


def _pyplot():
    """matplotlib's pyplot, imported when a figure is drawn (grading a lab never draws one)."""
    import matplotlib.pyplot as plt

    return plt


def figure(ncols: int = 1, nrows: int = 1, *, size: float = 4.0, **kwargs):
    """A figure with a grid of axes, ``size`` inches per panel."""
    kwargs.setdefault("layout", "constrained")
    fig, axes = _pyplot().subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, **kwargs)
    return fig, axes.ravel()


def save(fig, out: Path, name: str, *, show: bool = True) -> Path:
    """Save ``fig`` as ``out/name.png`` and close it; returns the path.

    In a notebook (matplotlib's inline backend) the figure is also shown in the cell's output, unless
    ``show=False`` (the training loop's image grid of every epoch).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt = _pyplot()
    if show and "inline" in plt.get_backend():
        from IPython.display import display

        display(fig)
    plt.close(fig)
    return path


def grid(lo: float, hi: float, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A square ``n×n`` grid over [lo, hi]²: (xx, yy, points of shape (n*n, 2))."""
    xs = np.linspace(lo, hi, n, dtype=np.float32)
    xx, yy = np.meshgrid(xs, xs)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def scatter_classes(ax, x, y, *, labels=("class 0", "class 1")) -> None:
    """Scatter 2-D points coloured by a 0/1 label, with a legend."""
    x, y = np.asarray(x), np.asarray(y)
    for cls, (colour, marker) in enumerate([("tab:blue", "o"), ("tab:orange", "^")]):
        pts = x[y == cls]
        ax.scatter(
            pts[:, 0], pts[:, 1], c=colour, marker=marker, s=18, edgecolors="k", linewidths=0.3, label=labels[cls]
        )
    ax.legend(loc="best", fontsize=8)


def decision_regions(ax, xx, yy, prob, x, y, *, alpha: float = 0.5):
    """P(class 1) on a grid as a filled contour, the 0.5 boundary in black, and the data on top.

    Returns the filled contour, for a colour bar. A flat probability (a model that learned nothing)
    has no boundary worth drawing, so none is drawn.
    """
    xx, yy, prob = np.asarray(xx), np.asarray(yy), np.asarray(prob)
    filled = ax.contourf(xx, yy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=alpha)
    if prob.min() < 0.49 and prob.max() > 0.51:
        ax.contour(xx, yy, prob, levels=[0.5], colors="k", linewidths=1)
    scatter_classes(ax, x, y)
    return filled


def image_grid(images, captions, *, wrong=None, title: str = "", ncols: int = 8):
    """Images (N, H, W, C) in a grid, each with a caption; captions of ``wrong`` ones in red.

    Drawn every epoch by the training loop, so it is one montage in one axes: a figure of many
    small axes costs more to lay out and save than the training epoch of a small model.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    ncols = max(1, min(n, ncols))
    nrows = max(1, -(-n // ncols))
    # Fixed grey levels (0..255 for bytes, 0..1 for floats), so a faint digit looks faint.
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    gap, band = max(1, w // 8), max(4, h // 3)  # pixels between tiles, and above each for its caption
    cell_h, cell_w = h + band, w + gap
    montage = np.ones((nrows * cell_h, ncols * cell_w - gap, 3))  # white background, RGB
    tiles = np.clip(images / scale, 0.0, 1.0)
    tiles = np.repeat(tiles, 3, axis=-1) if c == 1 else tiles[..., :3]
    for i in range(n):
        r, col = divmod(i, ncols)
        montage[r * cell_h + band : (r + 1) * cell_h, col * cell_w : col * cell_w + w] = tiles[i]
    fig = _pyplot().figure(figsize=(1.6 * ncols, 1.6 * nrows * cell_h / cell_w + (0.4 if title else 0.0)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - (0.4 / fig.get_figheight() if title else 0.0)))
    ax.imshow(montage, interpolation="nearest")
    ax.axis("off")
    for i in range(n):
        r, col = divmod(i, ncols)
        red = wrong is not None and bool(np.asarray(wrong)[i])
        ax.text(
            col * cell_w + w / 2,
            r * cell_h + band * 0.6,
            captions[i],
            ha="center",
            va="center",
            fontsize=7,
            color="tab:red" if red else "black",
        )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.2 / fig.get_figheight(), va="center")
    return fig


def history_curves(history: dict, *, title: str = ""):
    """Loss and accuracy per epoch, training and validation side by side."""
    fig, (ax_loss, ax_acc) = figure(2, 1, size=4.0)
    epochs = history["epoch"]
    for ax, metric in [(ax_loss, "loss"), (ax_acc, "accuracy")]:
        ax.plot(epochs, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig
