"""A failed comparison of image-like arrays, drawn: expected | got | difference.

Drawn in the trusted test process from the arrays the test compared (plain data that came back from
the sandbox), never by student code. An array is image-like when both of its spatial sides have at
least ``MIN_SIDE`` elements: ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)`` (and ``(C, H, W)``,
``(N, C, H, W)``, the layouts of lab 07). Expected and got share one colour scale (from their finite
values), the difference has its own; the worst element is boxed; NaN and inf are magenta. Of many
items and channels, the ``ROWS`` with the largest differences are shown; a large image is cropped to
``SIDE`` x ``SIDE`` around the worst element, so a PNG stays under ``MAX_BYTES``.

:func:`draw` never raises: a picture that cannot be drawn is a sentence saying why.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import numpy as np

MIN_SIDE = 4  # both spatial sides at least this long: a map, a grid, a filter, an image
ROWS = 3  # (item, channel) pairs shown at most
SIDE = 48  # a panel shows at most SIDE x SIDE elements, around the worst one
MAX_BYTES = 60_000  # a picture's PNG, at most
RANKED = 4_000_000  # elements above which only the worst element's item and channel are shown
BAD = "#ff00ff"  # NaN and inf


@dataclass(frozen=True)
class Panel:
    """One row of the picture: the 2-D slices drawn (after cropping), and which they are."""

    label: str
    expected: np.ndarray
    got: np.ndarray
    difference: np.ndarray  # |got - expected|, NaN where either is not finite
    worst: tuple[int, int] | None  # the worst element's (row, column) in this crop, if it is in this row


@dataclass(frozen=True)
class Picture:
    """A drawn comparison: the PNG, and what it shows (``panels``: the arrays each row drew)."""

    png: bytes
    caption: str
    panels: tuple[Panel, ...]


def layout(shape: tuple[int, ...]) -> tuple[int | None, int, int, int | None] | None:
    """The axes ``(item, height, width, channel)`` of an image-like ``shape`` (None: no such axis), or
    None when it is not image-like."""
    big = [n >= MIN_SIDE for n in shape]
    if len(shape) == 2:
        return (None, 0, 1, None) if all(big) else None
    if len(shape) == 3:
        return (None, 0, 1, 2) if big[0] and big[1] else (None, 1, 2, 0) if big[1] and big[2] else None
    if len(shape) == 4:
        return (0, 1, 2, 3) if big[1] and big[2] else (0, 2, 3, 1) if big[2] and big[3] else None
    return None


def _nhwc(arr: np.ndarray, axes: tuple) -> np.ndarray:
    """``arr`` as (N, H, W, C) float64, whatever its layout."""
    item, h, w, c = axes
    order = [a for a in (item, h, w, c) if a is not None]
    out = np.transpose(np.asarray(arr, np.float64), order)
    if item is None:
        out = out[None]
    return out[..., None] if c is None else out


def _in_nhwc(index: tuple[int, ...], axes: tuple) -> tuple[int, int, int, int]:
    return tuple(0 if a is None else int(index[a]) for a in axes)  # type: ignore[return-value]


def _difference(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want)
    return np.where(np.isfinite(want) & np.isfinite(got), diff, np.nan)


def _rows(want: np.ndarray, got: np.ndarray, worst: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    """The (item, channel) pairs to show: the worst element's, then those with the largest differences."""
    first = (worst[0], worst[3])
    if want.size > RANKED or want.shape[0] * want.shape[3] == 1:
        return [first]
    diff = _difference(want, got)
    score = np.where(np.isnan(diff), np.inf, diff).max(axis=(1, 2))  # (N, C); a NaN counts as the worst
    order = [tuple(int(i) for i in np.unravel_index(k, score.shape)) for k in np.argsort(-score, axis=None)]
    return [first, *[p for p in order if p != first and score[p] > 0]][:ROWS]


def _crop(n: int, at: int) -> slice:
    start = min(max(at - SIDE // 2, 0), max(n - SIDE, 0))
    return slice(start, min(start + SIDE, n))


def panels(want: np.ndarray, got: np.ndarray, worst: tuple[int, ...]) -> tuple[tuple[Panel, ...], str]:
    """The rows to draw for ``want`` and ``got`` (image-like, the same shape), and a caption saying which."""
    axes = layout(want.shape)
    assert axes is not None
    w4, g4 = _nhwc(want, axes), _nhwc(got, axes)
    at = _in_nhwc(worst, axes) if worst else (0, 0, 0, 0)
    rows, cols = _crop(w4.shape[1], at[1]), _crop(w4.shape[2], at[2])
    shown = []
    for n, c in _rows(w4, g4, at):
        e, g = w4[n, rows, cols, c], g4[n, rows, cols, c]
        mark = (at[1] - rows.start, at[2] - cols.start) if worst and (n, c) == (at[0], at[3]) else None
        label = ", ".join([*([f"item {n}"] if w4.shape[0] > 1 else []), *([f"channel {c}"] if w4.shape[3] > 1 else [])])
        shown.append(Panel(label, e, g, _difference(e, g), mark))
    caption = []
    if len(shown) < w4.shape[0] * w4.shape[3]:
        caption.append(f"{len(shown)} of {w4.shape[0] * w4.shape[3]} (item, channel) slices, the most different")
    if (rows.stop - rows.start, cols.stop - cols.start) != w4.shape[1:3]:
        caption.append(
            f"rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop} of {w4.shape[1]}x{w4.shape[2]}"
        )
    if worst:
        caption.append(f"box: the worst element, index {tuple(worst)}")
    bad = int(np.sum(~np.isfinite(want))) + int(np.sum(~np.isfinite(got)))
    if bad:
        caption.append(f"magenta: NaN or inf ({bad} elements)")
    return tuple(shown), "; ".join(caption)


def _scale(shown: tuple[Panel, ...]) -> tuple[float, float, float]:
    """The shared scale of expected and got (from their finite values), and the difference's top."""
    values = np.concatenate([a[np.isfinite(a)] for p in shown for a in (p.expected, p.got)] + [np.zeros(0)])
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    diffs = np.concatenate([p.difference[np.isfinite(p.difference)] for p in shown] + [np.zeros(0)])
    top = float(diffs.max()) if diffs.size and diffs.max() > 0 else 1.0
    return low, (high if high > low else low + 1.0), top


def _box(ax, worst: tuple[int, int], shape: tuple[int, ...]) -> None:
    """A box around the worst element: around it and its neighbours where one element is a few pixels."""
    from matplotlib.patches import Rectangle

    half = 0.5 if max(shape) <= 16 else 1.5
    r, c = worst
    ax.add_patch(Rectangle((c - half, r - half), 2 * half, 2 * half, fill=False, edgecolor="cyan", linewidth=1.5))


def _render(shown: tuple[Panel, ...], title: str, caption: str, dpi: int) -> bytes:
    """The PNG of ``shown``: a row of expected | got | difference per panel, colour bars beside the last two.

    matplotlib is imported here, not with this module: a comparison that is not image-like costs nothing
    (the zygote imports it once for the warm grading processes)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    lines = textwrap.wrap(caption, 110)
    height = 0.75 + 2.0 * len(shown) + 0.15 * len(lines)
    fig = Figure(figsize=(7.2, height), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.02, right=0.92, top=1 - 0.7 / height, bottom=(0.1 + 0.15 * len(lines)) / height)
    fig.subplots_adjust(wspace=0.35, hspace=0.35)
    low, high, top = _scale(shown)
    values = matplotlib.colormaps["viridis"].with_extremes(bad=BAD)
    diffs = matplotlib.colormaps["Reds"].with_extremes(bad=BAD)
    grid = fig.subplots(len(shown), 3, squeeze=False)
    for row, p in zip(grid, shown, strict=True):
        for ax, arr, cmap, lim, name in (
            (row[0], p.expected, values, (low, high), "expected"),
            (row[1], p.got, values, (low, high), "got"),
            (row[2], p.difference, diffs, (0.0, top), "|got - expected|"),
        ):
            image = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
            ax.set_title(f"{name}\n{p.label}" if p.label else name, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if name != "expected":  # the colour bar beside a panel, not taken from it: the panels stay one size
                bar = fig.colorbar(image, cax=ax.inset_axes((1.04, 0.0, 0.06, 1.0)))
                bar.ax.tick_params(labelsize=6)
            if p.worst is not None:
                _box(ax, p.worst, arr.shape)
    fig.suptitle(title[:90], y=1 - 0.08 / height, va="top", fontsize=9)
    fig.text(0.5, 0.02 / height, "\n".join(lines), ha="center", va="bottom", fontsize=7)
    fig.canvas.draw()
    # 256 colours are plenty for two colour maps and text, and a palette PNG of noise is a third of an RGB one.
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]).quantize(256, Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    image.save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def draw(want, got, worst: tuple[int, ...], what: str) -> Picture | str | None:
    """The picture of a failed comparison of ``want`` (expected) and ``got``: a :class:`Picture`, None when
    the arrays are not image-like (or not of one shape), or a sentence saying why it could not be drawn."""
    try:
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape or layout(want.shape) is None:
            return None
        if want.dtype.kind not in "biuf" or got.dtype.kind not in "biuf":
            return "no picture: the arrays are not numbers"
        shown, caption = panels(want, got, worst)
        for dpi in (72, 56, 44):
            png = _render(shown, what, caption, dpi)
            if len(png) <= MAX_BYTES:
                return Picture(png, caption, shown)
        return f"no picture: it would take {len(png) // 1000} KB, more than {MAX_BYTES // 1000} KB"
    except Exception as exc:  # a picture is a courtesy: never the reason a grading fails
        return f"no picture: drawing it failed ({type(exc).__name__}: {exc})"[:300]
