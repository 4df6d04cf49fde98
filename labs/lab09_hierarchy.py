# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %%
"""Hierarchical filters: strokes, then parts, then a face, with max-pooling between the levels."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from course import images, plotting

# %% [markdown]
# # Lab 09 — hierarchical filters: find a face
#
# The lecture's strategy, as code. A face is a 27×27 pattern: two eyes (short horizontal strokes),
# a nose (a vertical stroke) and a mouth (a long horizontal stroke).
#
# 1. **Level 1 — strokes.** 3×3 filters for horizontal and vertical line pieces, thresholded, mark
#    the centre pixels of strokes.
# 2. **Max-pool 3×3 (27×27 → 9×9).** Each pooled cell says "there is a stroke somewhere in these
#    3×3 pixels" — *x means don't care about the value*: where exactly no longer matters.
# 3. **Level 2 — parts**, 3×3 filters over the pooled stroke maps: an *eye pair* (stroke, gap,
#    stroke), a *nose* (three vertical cells), a *mouth* (three horizontal cells).
# 4. **Max-pool 3×3 (9×9 → 3×3).**
# 5. **Level 3 — the face**: eyes in the top row, nose in the middle, mouth at the bottom.
#
# Each level sees a larger area through fewer, more meaningful numbers. The pooling between levels
# makes the detector tolerant to small shifts, and the arrangement at level 3 makes it reject the
# same parts in the wrong places.
#
# The scene is 81×81: a 3×3 grid of 27×27 cells, with the face in one cell and distractors (half a
# face, a face upside down, loose strokes) in the others.

# %%
CELL = 27
# Stroke-centre detectors: a 3-pixel line through the centre scores 6; its end pixels only 4.
HORIZONTAL = jnp.array([[-1.0, -1.0, -1.0], [2.0, 2.0, 2.0], [-1.0, -1.0, -1.0]])
LEVEL1 = jnp.stack([HORIZONTAL, HORIZONTAL.T], axis=-1)[:, :, None, :]  # (3, 3, 1, 2): horizontal, vertical
LEVEL1_THRESHOLD = 5.0

# Level-2 parts over the pooled (horizontal, vertical) maps: (3, 3, 2, 3) -> eye pair, nose, mouth.
_level2 = np.zeros((3, 3, 2, 3), np.float32)
_level2[1, :, 0, 0] = [1.0, -1.0, 1.0]  # eye pair: stroke, gap, stroke
_level2[:, 1, 1, 1] = 1.0  # nose: a vertical run of three cells
_level2[1, :, 0, 2] = 1.0  # mouth: a horizontal run of three cells
LEVEL2 = jnp.asarray(_level2)
LEVEL2_THRESHOLDS = jnp.array([1.5, 2.5, 2.5])

# Level 3 over the pooled parts, (3, 3, 3, 1): eyes top-centre, nose centre, mouth bottom-centre.
_level3 = np.zeros((3, 3, 3, 1), np.float32)
_level3[0, 1, 0, 0] = _level3[1, 1, 1, 0] = _level3[2, 1, 2, 0] = 1.0
LEVEL3 = jnp.asarray(_level3)
LEVEL3_THRESHOLD = 2.5

# %% [markdown]
# ## 1. The scene (given)


# %%
def _draw(canvas: np.ndarray, row: int, col: int, parts: list[str]) -> None:
    """Draw face parts into the 27×27 cell whose top-left pixel is (row, col)."""
    if "eyes" in parts:
        canvas[row + 4, col + 9 : col + 12] = 1.0
        canvas[row + 4, col + 15 : col + 18] = 1.0
    if "nose" in parts:
        canvas[row + 9 : row + 18, col + 13] = 1.0
    if "mouth" in parts:
        canvas[row + 22, col + 9 : col + 18] = 1.0
    if "mouth-on-top" in parts:
        canvas[row + 4, col + 9 : col + 18] = 1.0
    if "eyes-below" in parts:
        canvas[row + 22, col + 9 : col + 12] = 1.0
        canvas[row + 22, col + 15 : col + 18] = 1.0


def make_scene(face_cell: tuple[int, int] | None, *, key: Array, shift: tuple[int, int] = (0, 0)) -> Array:
    """An 81×81×1 image: a face in `face_cell` (moved by `shift` pixels) among distractors.

    The other cells hold, in a key-dependent order: half a face (eyes and nose), a face upside down,
    a mouth alone, and empty cells; plus 2 % pixel noise.
    """
    canvas = np.zeros((3 * CELL, 3 * CELL), np.float32)
    cells = [(r, c) for r in range(3) for c in range(3) if (r, c) != face_cell]
    order = np.asarray(jax.random.permutation(key, len(cells)))
    distractors = [["eyes", "nose"], ["mouth-on-top", "nose", "eyes-below"], ["mouth"]]
    for (r, c), parts in zip([cells[i] for i in order], distractors):
        _draw(canvas, r * CELL, c * CELL, parts)
    if face_cell is not None:
        face = np.zeros_like(canvas)
        _draw(face, face_cell[0] * CELL, face_cell[1] * CELL, ["eyes", "nose", "mouth"])
        canvas = np.maximum(canvas, np.roll(face, shift, axis=(0, 1)))
    noise = np.asarray(jax.random.bernoulli(jax.random.fold_in(key, 1), 0.02, canvas.shape), np.float32)
    return jnp.asarray(np.maximum(canvas, 0.3 * noise))[:, :, None]  # (81, 81, 1)


# %% [markdown]
# ## 2. The levels
# Use `images.conv2d(x, w, padding="SAME" or "VALID")` (XLA's convolution; you wrote your own in
# lab 08). Every map is NHWC.


# %%
def max_pool3(x: Array) -> Array:
    """Non-overlapping 3×3 max-pooling: (N, H, W, C) -> (N, H/3, W/3, C); H and W divisible by 3."""
    # YOUR CODE HERE (lab09: max_pool3)
    raise NotImplementedError("lab09: max_pool3")


def strokes(image: Array) -> Array:
    """Level 1: (N, H, W, 1) -> (N, H, W, 2), 1.0 where a stroke centre is, else 0.0.

    'SAME' convolution with LEVEL1, then 1.0 where the response exceeds LEVEL1_THRESHOLD.
    """
    # YOUR CODE HERE (lab09: strokes)
    raise NotImplementedError("lab09: strokes")


def parts(pooled_strokes: Array) -> Array:
    """Level 2: pooled strokes (N, h, w, 2) -> (N, h, w, 3) eye pair / nose / mouth, 1.0 where found.

    'SAME' convolution with LEVEL2, then 1.0 where the response exceeds LEVEL2_THRESHOLDS (per part).
    """
    # YOUR CODE HERE (lab09: parts)
    raise NotImplementedError("lab09: parts")


def face_scores(image: Array) -> Array:
    """The whole hierarchy: image (N, 81, 81, 1) -> face scores (N, 7, 7, 1).

    strokes -> max_pool3 -> parts -> max_pool3 -> 'VALID' convolution with LEVEL3. A score above
    LEVEL3_THRESHOLD means "a face"; the face in cell (r, c) scores at (3r, 3c).
    """
    # YOUR CODE HERE (lab09: face_scores)
    raise NotImplementedError("lab09: face_scores")


# %% [markdown]
# ## 3. Demo: every level's maps


# %%
def demo(out: Path) -> list[Path]:
    """Show the scene, the stroke maps, the parts and the face scores."""
    scene = make_scene((1, 2), key=jax.random.key(0))[None]  # (1, 81, 81, 1)
    s = strokes(scene)
    p = parts(max_pool3(s))
    scores = face_scores(scene)
    best = np.unravel_index(int(jnp.argmax(scores[0, :, :, 0])), (7, 7))
    print(f"highest face score {float(scores.max()):.1f} at {best} (face in cell (1, 2) -> (3, 6))")
    panels = [
        (scene[0, :, :, 0], "scene 81×81: a face among distractors", "gray"),
        (s[0, :, :, 0], "level 1: horizontal strokes", "gray"),
        (s[0, :, :, 1], "level 1: vertical strokes", "gray"),
        (max_pool3(s)[0, :, :, 0], "max-pool → 27×27 (horizontal)", "gray"),
        (p[0, :, :, 0], "level 2: eye pairs", "gray"),
        (p[0, :, :, 1], "level 2: noses", "gray"),
        (p[0, :, :, 2], "level 2: mouths", "gray"),
        (scores[0, :, :, 0], "level 3: face score (7×7)", "viridis"),
    ]
    fig, axes = plotting.figure(4, 2, size=3.2)
    for ax, (img, title, cmap) in zip(axes, panels):
        shown = ax.imshow(np.asarray(img), cmap=cmap)
        ax.set(title=title, xticks=[], yticks=[])
        ax.title.set_fontsize(9)
    fig.colorbar(shown, ax=axes[-1], shrink=0.8)
    axes[-1].scatter([best[1]], [best[0]], marker="s", s=200, facecolors="none", edgecolors="red")
    return [plotting.save(fig, out, "hierarchy_levels")]


# %%
if __name__ == "__main__":
    demo(Path("figures/lab09"))
