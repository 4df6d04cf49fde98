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
(:mod:`course._tfds_builders`) stores the same images as plain uint8 tensors, so it prepares TFDS's
``array_record`` format without TensorFlow, and is read back with ``tfds.data_source``. The decoded arrays
are then cached as one ``.npz``; every later ``load`` reads only that file (well under a second) and
does not import TFDS at all. Every cache file is written under a temporary name and renamed when
complete, so an interrupted or failed preparation never leaves a half-written cache.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from course.labs import CourseError, root

CACHE_FORMAT = 1  # bump when the cached arrays' layout changes


class DataError(CourseError):
    """Data that are missing or damaged; the message names the file and what to do."""


@dataclass(frozen=True)
class RawFile:
    """One official IDX file: its name, the .gz's size and sha256 (TFDS's registered checksum), and
    the sha256 of the decompressed bytes (so a recompressed copy with the same content is accepted)."""

    name: str
    size: int
    sha256: str
    content_sha256: str
    shape: tuple[int, ...]

    @property
    def magic(self) -> int:
        # IDX: two zero bytes, 0x08 (unsigned byte), then the number of dimensions.
        return 0x0800 + len(self.shape)


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    url: str
    version: str  # the TFDS version of the stock builder whose files these are
    files: dict[str, RawFile]
    class_names: tuple[str, ...]


# Checksums of the .gz files are TFDS's (tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt;
# tests/course/test_mnist.py checks they still agree). Content checksums were computed here from
# ../shared/data/mnist and from Debian's dataset-fashion-mnist, which recompressed the original bytes.
SOURCES = {
    "mnist": Source(
        name="mnist",
        title="MNIST",
        url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        version="3.0.1",
        files={
            "train_images": RawFile(
                "train-images-idx3-ubyte.gz",
                9912422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                (60000, 28, 28),
            ),
            "train_labels": RawFile(
                "train-labels-idx1-ubyte.gz",
                28881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                (60000,),
            ),
            "test_images": RawFile(
                "t10k-images-idx3-ubyte.gz",
                1648877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                (10000, 28, 28),
            ),
            "test_labels": RawFile(
                "t10k-labels-idx1-ubyte.gz",
                4542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                (10000,),
            ),
        },
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion_mnist": Source(
        name="fashion_mnist",
        title="Fashion-MNIST",
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        version="3.0.1",
        files={
            "train_images": RawFile(
                "train-images-idx3-ubyte.gz",
                26421880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                (60000, 28, 28),
            ),
            "train_labels": RawFile(
                "train-labels-idx1-ubyte.gz",
                29515,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                (60000,),
            ),
            "test_images": RawFile(
                "t10k-images-idx3-ubyte.gz",
                4422102,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                (10000, 28, 28),
            ),
            "test_labels": RawFile(
                "t10k-labels-idx1-ubyte.gz",
                5148,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                (10000,),
            ),
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


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


# --------------------------------------------------------------------------------- reading IDX files


def _gunzip(data: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DataError(
            f"{path} is truncated: its gzip stream ends early ({len(data)} bytes); "
            "delete it and copy or download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{path} is not a valid gzip file ({exc}); delete it and copy or download it again") from None


def _parse_idx(content: bytes, path: Path, raw: RawFile) -> np.ndarray:
    """An IDX file's array, after checking its magic number, shape and length against ``raw``."""
    kind = "an image" if len(raw.shape) == 3 else "a label"
    if len(content) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(content)} bytes)")
    magic = int.from_bytes(content[:4], "big")
    if magic != raw.magic:
        raise DataError(
            f"{path} has magic number {magic}, but {kind} IDX file starts with {raw.magic}: "
            "is another file saved under this name?"
        )
    ndim = content[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", ndim, 4))
    if shape != raw.shape:
        raise DataError(f"{path} holds an array of shape {shape}, expected {raw.shape}")
    if len(content) != header + int(np.prod(shape)):
        raise DataError(
            f"{path} has {len(content) - header} data bytes where its header promises "
            f"{int(np.prod(shape))}: the file is damaged"
        )
    return np.frombuffer(content, np.uint8, offset=header).reshape(shape)


def read_idx(path: Path, raw: RawFile) -> np.ndarray:
    """Read and verify one official IDX ``.gz`` file; any problem raises :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{path} is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() == raw.sha256:
        return _parse_idx(gzip.decompress(data), path, raw)
    # Not the official bytes: say precisely what is wrong, or accept a recompressed copy of them.
    content = _gunzip(data, path)
    array = _parse_idx(content, path, raw)
    if hashlib.sha256(content).hexdigest() == raw.content_sha256:
        return array
    raise DataError(
        f"{path} fails its checksum: sha256 {hashlib.sha256(data).hexdigest()}, expected "
        f"{raw.sha256} (the official file, as TFDS registers it); delete it and copy or "
        "download it again"
    )


@contextlib.contextmanager
def _atomic_file(path: Path, check: Callable[[Path], object] | None = None):
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
        _atomic_file(folder / raw.name, check=lambda tmp: read_idx(tmp, raw)) as out,
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
    with _atomic_file(path) as out:
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
    ``tfds.data_source``, and check that the round trip gives exactly the verified IDX arrays."""
    from course import _tfds_builders

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
    prepared = _prepare_with_tfds(source, folder, cache_dir(cache) / "tfds", raw)
    _atomic_savez(arrays_path, **{k: (v.astype(np.int32) if k.endswith("labels") else v) for k, v in prepared.items()})
    cached = _read_cache(arrays_path, source)
    assert cached is not None
    return cached
