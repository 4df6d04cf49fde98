"""The official IDX files of MNIST and Fashion-MNIST: what each is, and reading one, verified.

``SOURCES`` names the four files of each data set with their sizes and checksums (TFDS's, and of the
decompressed bytes, so that a recompressed copy of the same content is accepted); :func:`read_idx`
reads one and says precisely what is wrong with a file that is not it. :mod:`course.mnist` finds,
downloads and caches them; :mod:`course._tfds_builders` prepares them with TFDS.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course.errors import DataError


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
