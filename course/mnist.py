"""Real data: MNIST and Fashion-MNIST through TensorFlow Datasets, without TensorFlow, offline first.

``load("mnist")`` returns the 60k/10k splits as uint8 arrays::

    data = load("mnist")             # Dataset(train=Split(images, labels), test=..., class_names)
    data.train.images                # (60000, 28, 28, 1) uint8, NHWC
    data.train.labels                # (60000,) int32

Where the four official IDX files come from, in order:

1. ``data_dir`` (an argument) or ``$COURSE_DATA_DIR``: a folder holding ``mnist/`` (or ``fashion_mnist/``)
   with the four ``.gz`` files. When it is there, no network is touched.
2. Files downloaded earlier into the cache (``<cache>/downloads/<name>/``).
3. The official mirror, once, when online; ``download=False`` or ``$COURSE_OFFLINE=1`` forbids it.

Every file is checked against the checksum TFDS registers for it before use; a bad file gets an error
that names it and says what is wrong (missing, truncated, not gzip, wrong magic number, checksum).

TFDS's stock MNIST builder needs TensorFlow to encode PNGs while preparing. The builder here
(:mod:`course._tfds_builders`) stores the same images as raw uint8 bytes (784 per image), so it prepares TFDS's
``array_record`` format without TensorFlow, and is read back with ``tfds.data_source``. The decoded arrays
are then cached as one ``.npz``; every later ``load`` reads only that file (well under a second) and
does not import TFDS at all. Where ``tensorflow_datasets`` cannot be imported (a machine set up with
JAX alone, e.g. a GPU box), ``load`` says so in one line and caches the verified IDX arrays directly:
the same arrays, dtypes and order, as the TFDS round trip is checked to return exactly them. Every cache file is written under a temporary name and renamed when
complete, so an interrupted or failed preparation never leaves a half-written cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from course.errors import DataError
from course.idx import SOURCES, RawFile, Source, read_idx
from course.labs import root

CACHE_FORMAT = 1  # bump when the cached arrays' layout changes


class Split(NamedTuple):
    """One split: images (N, 28, 28, 1) uint8 (NHWC) and labels (N,) int32."""

    images: np.ndarray
    labels: np.ndarray

    def head(self, n: int) -> "Split":
        """The first ``n`` examples (a quick subset for tests and smoke runs)."""
        return Split(self.images[:n], self.labels[:n])


class Dataset(NamedTuple):
    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]


# ----------------------------------------------------------------------------------------- locations


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where prepared data live: ``cache``, else ``$COURSE_CACHE_DIR/data``, else ``<course>/.cache/data``."""
    if cache is not None:
        return Path(cache)
    return Path(os.environ.get("COURSE_CACHE_DIR", root() / ".cache")) / "data"


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def _local_folder(source: Source, data_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The ``<name>/`` folder under ``data_dir`` or ``$COURSE_DATA_DIR``, or None and why there is none."""
    if data_dir is not None:
        base, origin = Path(data_dir), "data_dir"
    elif os.environ.get("COURSE_DATA_DIR"):
        base, origin = Path(os.environ["COURSE_DATA_DIR"]), "$COURSE_DATA_DIR"
    else:
        return None, "$COURSE_DATA_DIR is not set"
    folder = base / source.name
    return (folder, "") if folder.is_dir() else (None, f"{origin}={base} has no {source.name}/ folder")


def _instructions(source: Source) -> str:
    names = ", ".join(f.name for f in source.files.values())
    return (
        f"put the four official files ({names}) in a folder DIR/{source.name}/ and set "
        f"COURSE_DATA_DIR=DIR (or pass data_dir=DIR); they are at {source.url}"
    )


@contextlib.contextmanager
def atomic_file(path: Path, check: Callable[[Path], object] | None = None):
    """Write ``path`` through a temporary file in the same folder, renamed only once complete (and
    ``check``-ed): a crash, a failed check or a full disk leaves the old state, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared by a lab machine's users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(source: Source, raw: RawFile, folder: Path, mirror: str | None) -> None:
    """Fetch one file into ``folder``, verified before it takes its name."""
    url = (mirror or source.url).rstrip("/") + "/" + raw.name
    with (
        atomic_file(folder / raw.name, check=lambda tmp: read_idx(tmp, raw)) as out,
        urllib.request.urlopen(url, timeout=30) as response,
    ):
        shutil.copyfileobj(response, out)


def read_raw(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    download: bool | None = None,
    mirror: str | None = None,
) -> tuple[Path, dict[str, np.ndarray]]:
    """The verified IDX arrays of a data set, and the folder they came from (see the module docstring)."""
    source = _source(name)
    folder, why_not = _local_folder(source, data_dir)
    if folder is not None:
        # A local copy was offered: use it or say what is wrong with it, never fall back silently.
        missing = [f.name for f in source.files.values() if not (folder / f.name).is_file()]
        if missing:
            raise DataError(f"{folder} is missing {', '.join(missing)}; {_instructions(source)}")
        return folder, {role: read_idx(folder / f.name, f) for role, f in source.files.items()}

    downloads = cache_dir(cache) / "downloads" / source.name
    if download is None:
        download = os.environ.get("COURSE_OFFLINE", "") in ("", "0")
    todo = [f for f in source.files.values() if not (downloads / f.name).is_file()]
    if todo and not download:
        raise DataError(f"{source.title} is not here and downloading is off ({why_not}); {_instructions(source)}")
    for raw in todo:
        try:
            _download(source, raw, downloads, mirror)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(
                f"{source.title} is not here and could not be downloaded ({reason}; {why_not}); {_instructions(source)}"
            ) from None
    return downloads, {role: read_idx(downloads / f.name, f) for role, f in source.files.items()}


# ------------------------------------------------------------------------------------ the public load


def _arrays_path(source: Source, cache: str | os.PathLike | None) -> Path:
    return cache_dir(cache) / "arrays" / f"{source.name}-{source.version}-v{CACHE_FORMAT}.npz"


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_file(path) as out:
        np.savez(out, **arrays)


def _read_cache(path: Path, source: Source) -> Dataset | None:
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    except FileNotFoundError:
        return None
    except Exception:  # an unreadable cache is rebuilt, never trusted
        path.unlink(missing_ok=True)
        return None
    for role, raw in source.files.items():
        want = raw.shape + (1,) if role.endswith("images") else raw.shape
        if arrays[role].shape != want:
            path.unlink(missing_ok=True)
            return None
    return Dataset(
        source.name,
        Split(arrays["train_images"], arrays["train_labels"]),
        Split(arrays["test_images"], arrays["test_labels"]),
        source.class_names,
    )


def _prepare_with_tfds(
    source: Source, folder: Path, tfds_dir: Path, raw: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Prepare the array_record data set with TFDS (once), read both splits back with
    ``tfds.data_source``, and check that the round trip gives exactly the verified IDX arrays.

    Raises :class:`_NoTfds` when ``tensorflow_datasets`` cannot be imported (e.g. a GPU machine with
    no TFDS installed); ``load`` then decodes the IDX files itself.
    """
    try:
        from course import _tfds_builders
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "tensorflow_datasets":
            raise
        raise _NoTfds from None

    print(f"Preparing {source.title} with TFDS in {tfds_dir} (once; later loads read a cache)...", flush=True)
    for attempt in range(2):
        prepared = _tfds_builders.prepare_and_read(source, folder, tfds_dir)
        bad = [role for role, array in raw.items() if not np.array_equal(prepared[role].reshape(array.shape), array)]
        if not bad:
            return prepared
        # Left over from another version or damaged: prepare afresh, once.
        shutil.rmtree(_tfds_builders.prepared_dir(source, tfds_dir), ignore_errors=True)
    raise DataError(
        f"the data TFDS prepared in {tfds_dir} disagree with {folder / source.files[bad[0]].name} "
        "even after preparing afresh; please report this"
    )


class _NoTfds(Exception):
    """``tensorflow_datasets`` cannot be imported here."""


def _decode_idx(source: Source, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The verified IDX arrays as TFDS's round trip returns them: images (N, 28, 28, 1) uint8, labels."""
    print(
        f"Preparing {source.title} from its verified IDX files: TFDS is the usual path and was not found "
        "(tensorflow_datasets cannot be imported); the cached arrays are the same",
        flush=True,
    )
    return {role: (array[..., None] if role.endswith("images") else array) for role, array in raw.items()}


def load(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    download: bool | None = None,
    mirror: str | None = None,
) -> Dataset:
    """MNIST or Fashion-MNIST as uint8 arrays: train (60000, 28, 28, 1), test (10000, 28, 28, 1).

    Args:
      name: ``"mnist"`` or ``"fashion_mnist"``.
      data_dir: a folder holding ``<name>/`` with the four official files (default ``$COURSE_DATA_DIR``).
      cache: where prepared data are kept (default ``$COURSE_CACHE_DIR/data`` or ``<course>/.cache/data``).
      download: allow downloading the official files when there is no local copy (default: yes,
        unless ``$COURSE_OFFLINE=1``).
      mirror: another base URL to download from.
    """
    source = _source(name)
    arrays_path = _arrays_path(source, cache)
    if (cached := _read_cache(arrays_path, source)) is not None:
        return cached
    folder, raw = read_raw(name, data_dir=data_dir, cache=cache, download=download, mirror=mirror)
    try:
        prepared = _prepare_with_tfds(source, folder, cache_dir(cache) / "tfds", raw)
    except _NoTfds:
        prepared = _decode_idx(source, raw)
    _atomic_savez(arrays_path, **{k: (v.astype(np.int32) if k.endswith("labels") else v) for k, v in prepared.items()})
    cached = _read_cache(arrays_path, source)
    assert cached is not None
    return cached
