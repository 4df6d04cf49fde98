"""Small plotting helpers shared by the labs' demos (matplotlib, no screen needed)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def figure(ncols: int = 1, nrows: int = 1, *, size: float = 4.0, **kwargs):
    """A figure with a grid of axes, ``size`` inches per panel."""
    kwargs.setdefault("layout", "constrained")
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, **kwargs)
    return fig, axes.ravel()


def save(fig, out: Path, name: str) -> Path:
    """Save ``fig`` as ``out/name.png`` and close it; returns the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
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
        ax.scatter(pts[:, 0], pts[:, 1], c=colour, marker=marker, s=18, edgecolors="k", linewidths=0.3,
                   label=labels[cls])
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
    """Images (N, H, W, C) in a grid, each with a caption; captions of ``wrong`` ones in red."""
    images = np.asarray(images)
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = figure(min(n, ncols) or 1, nrows, size=1.6)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        red = wrong is not None and bool(np.asarray(wrong)[i])
        ax.set_title(captions[i], fontsize=7, color="tab:red" if red else "black")
    if title:
        fig.suptitle(title, fontsize=10)
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
