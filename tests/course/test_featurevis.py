"""course.featurevis: the references' feature visualisation (a decorrelated Fourier image, jitter, scale, rotation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course import featurevis, vgg16


def _reference_image(spectrum: np.ndarray) -> np.ndarray:
    """to_image by NumPy: 1/f-scaled inverse real FFT / 4, Lucid's colour matrix, sigmoid."""
    h = spectrum.shape[2]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(h)[None, :]
    scale = h / np.maximum(np.sqrt(fy**2 + fx**2), 1.0 / h)
    x = np.fft.irfft2(scale * (spectrum[0] + 1j * spectrum[1]), s=(h, h)).transpose(1, 2, 0) / 4.0
    m = featurevis.COLOR_CORRELATION_SVD_SQRT / np.linalg.norm(featurevis.COLOR_CORRELATION_SVD_SQRT, axis=0).max()
    return 1.0 / (1.0 + np.exp(-(x @ m.T)))


@pytest.mark.parametrize("size", [8, 9, 16], ids=["even", "odd", "16"])
def test_to_image_is_lucids_fourier_image_in_rgb_0_1(size):
    # NumPy draws the inputs: XLA:CPU compiles a many-axis jax.random draw for seconds.
    spectrum = jnp.asarray(np.random.default_rng(size).normal(size=(2, 3, size, size // 2 + 1)), jnp.float32)
    image = featurevis.to_image(spectrum)
    assert image.shape == (size, size, 3)
    assert float(image.min()) > 0.0 and float(image.max()) < 1.0
    np.testing.assert_allclose(image, _reference_image(np.asarray(spectrum, np.float64)), atol=1e-5)


def test_init_spectrum_shape_and_key():
    a = featurevis.init_spectrum(10, key=jax.random.key(0))
    assert a.shape == (2, 3, 10, 6)
    assert featurevis.init_spectrum(10, key=jax.random.key(0), batch=(4,)).shape == (4, 2, 3, 10, 6)
    np.testing.assert_array_equal(a, featurevis.init_spectrum(10, key=jax.random.key(0)))
    assert not np.allclose(a, featurevis.init_spectrum(10, key=jax.random.key(1)))
    assert float(jnp.std(a)) == pytest.approx(0.01, rel=0.1)


def test_random_transforms_stay_in_their_ranges_and_follow_the_key():
    moves = featurevis.random_transforms(jax.random.key(0), (3, 50), jitter=2.0, scale=0.1, degrees=10.0)
    assert moves.shape == (3, 50, 4)
    assert float(jnp.abs(moves[..., :2]).max()) <= 2.0
    assert 0.9 <= float(moves[..., 2].min()) and float(moves[..., 2].max()) <= 1.1
    assert float(jnp.abs(moves[..., 3]).max()) <= np.deg2rad(10.0) + 1e-6
    again = featurevis.random_transforms(jax.random.key(0), (3, 50), jitter=2.0, scale=0.1, degrees=10.0)
    np.testing.assert_array_equal(moves, again)


def test_transform_identity_shift_and_fill():
    transform = jax.jit(featurevis.transform)  # a compile per image shape, not one per operation (eager: below)
    image = jnp.asarray(np.random.default_rng(0).uniform(size=(12, 10, 3)), jnp.float32)
    same = transform(image, jnp.asarray([0.0, 0.0, 1.0, 0.0]))
    assert same.shape == image.shape
    np.testing.assert_allclose(same, image, atol=1e-6)
    # A whole-pixel shift by (2, -1): out[y, x] = in[y - 2, x + 1], grey where that is outside.
    moved = np.asarray(transform(image, jnp.asarray([2.0, -1.0, 1.0, 0.0]), fill=0.5))
    np.testing.assert_allclose(moved[2:, :-1], np.asarray(image)[:-2, 1:], atol=1e-5)
    np.testing.assert_allclose(moved[:2], 0.5, atol=1e-6)
    np.testing.assert_allclose(moved[:, -1], 0.5, atol=1e-6)
    # A rotation by 90° about the centre of a square image is numpy's rot90.
    square = image[:10]
    turned = transform(square, jnp.asarray([0.0, 0.0, 1.0, np.pi / 2]))
    assert turned.shape == square.shape
    np.testing.assert_allclose(turned, np.rot90(np.asarray(square), k=1, axes=(0, 1)), atol=1e-4)


def test_transform_jitted_and_not_agree():
    image = jnp.asarray(np.random.default_rng(1).uniform(size=(9, 9, 3)), jnp.float32)
    moves = jnp.asarray([0.3, -1.7, 1.05, 0.1])
    np.testing.assert_allclose(
        jax.jit(featurevis.transform)(image, moves), featurevis.transform(image, moves), atol=1e-6
    )


@pytest.mark.parametrize(
    "name,image,expected",
    [
        ("checkerboard", np.indices((16, 16)).sum(0)[..., None] % 2 * np.ones(3), 1.0),
        ("one slow wave", np.cos(2 * np.pi * np.arange(16) / 16)[:, None, None] * np.ones((16, 16, 3)), 0.0),
        ("constant", np.ones((16, 16, 3)), 0.0),
    ],
    ids=["checkerboard", "slow-wave", "constant"],
)
def test_high_frequency_fraction_of_known_images(name, image, expected):
    assert featurevis.high_frequency_fraction(image) == pytest.approx(expected, abs=1e-9)


def test_high_frequency_fraction_of_white_noise_is_the_area_outside_the_disk():
    noise = np.random.default_rng(0).normal(size=(64, 64, 3))
    assert featurevis.high_frequency_fraction(noise) == pytest.approx(1 - np.pi * 0.25**2, abs=0.03)


def _edge_objective(image):
    """A small fixed objective: the mean response of a 3×3 edge filter on the red channel, cropped."""
    kernel = jnp.asarray([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    out = jax.scipy.signal.convolve2d(image[..., 0], kernel, mode="valid")
    return jnp.mean(jnp.tanh(out))


def test_render_is_deterministic_in_its_key_and_climbs_the_objective():
    kw = dict(size=16, steps=30, learning_rate=0.1)
    a = featurevis.render(_edge_objective, key=jax.random.key(0), **kw)
    assert a.shape == (16, 16, 3) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    np.testing.assert_allclose(a, featurevis.render(_edge_objective, key=jax.random.key(0), **kw), atol=1e-6)
    assert not np.allclose(a, featurevis.render(_edge_objective, key=jax.random.key(1), **kw))
    start = featurevis.to_image(featurevis.init_spectrum(16, key=jax.random.split(jax.random.key(0))[0]))
    assert float(_edge_objective(start)) < 0.05 < float(_edge_objective(a))


def test_render_filters_is_render_for_each_filter():
    def objective(params, image, f):
        return params * _edge_objective(jnp.roll(image, f, axis=-1))  # filter f: channel f's edges

    key = jax.random.key(3)
    many = featurevis.render_filters(objective, 1.0, jnp.arange(2), size=12, steps=5, key=key, learning_rate=0.1)
    assert many.shape == (2, 12, 12, 3)
    alone = featurevis.render(lambda im: objective(1.0, im, 0), size=12, steps=5, key=key, learning_rate=0.1)
    np.testing.assert_allclose(many[0], alone, atol=1e-5)
    assert not np.allclose(many[1], alone, atol=1e-3)  # filter 1 is a picture of its own


def test_on_real_weights_the_picture_is_smooth_and_excites_its_filter(vgg16_data_dir):
    """block3_conv1 at 40×40 (lab 11's quick size), two filters: most of the energy of the references'
    image lies below half Nyquist (white noise: 20 %), and each filter's activation on it is positive.
    The comparison with plain ascent is benchmarks/bench_vgg.py's table."""
    layer, size = "block3_conv1", 40
    model = vgg16.pretrained("hed", until=layer, data_dir=vgg16_data_dir)
    features, params = vgg16.as_function(model, layer=layer, before_activation=True)

    def activation(p, caffe, f):
        return jnp.mean(features(p, caffe[None])[0, 2:-2, 2:-2, f])

    robust = featurevis.render_filters(
        lambda p, rgb, f: activation(p, 255.0 * (rgb[..., ::-1] - 0.5), f),
        params,
        jnp.arange(2),
        size=size,
        steps=24,
        key=jax.random.key(0),
        learning_rate=0.1,
    )
    for f in range(2):
        caffe = 255.0 * (robust[f][..., ::-1] - 0.5)
        assert featurevis.high_frequency_fraction(caffe) < 0.35
        assert float(activation(params, caffe, f)) > 0.0
