"""The synthetic data sets follow their formulas, for any key."""

import jax
import numpy as np
import pytest

from course import datasets


@pytest.mark.parametrize("seed", range(3))
def test_moons_at_zero_noise_lie_on_their_half_circles(seed):
    x, y = datasets.moons(201, key=jax.random.key(seed), noise=0.0)
    x, y = np.asarray(x, np.float64), np.asarray(y)
    assert x.shape == (201, 2) and y.shape == (201,)
    assert (y == 0).sum() == 100 and (y == 1).sum() == 101
    upper, lower = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0, atol=1e-6)  # unit circle about (0, 0)
    assert np.all(upper[:, 1] >= -1e-6)  # upper half
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, atol=1e-6)  # about (1, 0.5)
    assert np.all(lower[:, 1] <= 0.5 + 1e-6)  # lower half


def test_moons_noise_has_the_requested_scale():
    clean, _ = datasets.moons(4000, key=jax.random.key(0), noise=0.0)
    noisy, _ = datasets.moons(4000, key=jax.random.key(0), noise=0.1)
    np.testing.assert_allclose(np.std(np.asarray(noisy) - np.asarray(clean)), 0.1, rtol=0.05)


def test_linearly_separable_data_respect_the_margin():
    x, y = datasets.linearly_separable(300, key=jax.random.key(1), margin=0.2)
    # Rosenblatt's algorithm stops making mistakes after at most (R/γ)² updates on separable data
    # (Novikoff), here (√3 / 0.2)² < 100: so it must reach zero mistakes well within 1000 epochs.
    xa = np.c_[np.asarray(x, np.float64), np.ones(300)]
    t = 2 * np.asarray(y, np.float64) - 1
    w = np.zeros(3)
    for _ in range(1000):
        wrong = np.flatnonzero(np.sign(xa @ w) != t)
        if wrong.size == 0:
            break
        w += t[wrong[0]] * xa[wrong[0]]
    assert np.all(np.sign(xa @ w) == t)


@pytest.mark.parametrize("target", sorted(datasets.TARGETS))
def test_regression_targets_plus_noise(target):
    x, y = datasets.regression_1d(target, 500, key=jax.random.key(2), noise=0.0)
    assert x.shape == (500, 1) and np.all(np.diff(np.asarray(x)[:, 0]) >= 0)
    np.testing.assert_allclose(np.asarray(y), np.asarray(datasets.TARGETS[target](x)), atol=1e-7)
    with pytest.raises(ValueError, match="unknown target"):
        datasets.regression_1d("nope", 5, key=jax.random.key(0))
