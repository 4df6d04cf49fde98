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
