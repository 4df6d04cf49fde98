"""TFDS builders for MNIST and Fashion-MNIST that need no TensorFlow (imported only when preparing).

TFDS's stock builders declare ``tfds.features.Image``, whose PNG encoding needs TensorFlow. Here the
images are ``tfds.features.Tensor(shape=(28, 28, 1), dtype=uint8, encoding=BYTES)``: the same pixels,
stored raw in TFDS's ``array_record`` format, which ``tfds.data_source`` reads without TensorFlow. The
builders read the four IDX files from TFDS's *manual directory*, the folder :func:`course.mnist.read_raw` verified.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from course import idx


class _IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    SOURCE: idx.Source
    VERSION = tfds.core.Version("3.1.0")
    RELEASE_NOTES = {
        "3.0.1": "Same examples as TFDS's stock builder; images stored as uint8 tensors.",
        "3.1.0": "Each image stored as its 784 raw bytes, not as 784 int64 values (written one by one).",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Four official IDX .gz files, verified by course.mnist.read_raw."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.SOURCE.title}, prepared without TensorFlow by course._tfds_builders.",
            features=tfds.features.FeaturesDict(
                {
                    # Raw bytes: without it TFDS writes (and reads back) each pixel as an int64, one Python value at a time.
                    "image": tfds.features.Tensor(
                        shape=(28, 28, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                    ),
                    "label": tfds.features.ClassLabel(names=list(self.SOURCE.class_names)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.SOURCE.url,
            # Keep the official order, so example i here is example i of the IDX files.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        folder = Path(dl_manager.manual_dir)
        return {
            "train": self._generate_examples(folder, "train"),
            "test": self._generate_examples(folder, "test"),
        }

    def _generate_examples(self, folder: Path, split: str):
        files = self.SOURCE.files
        images = idx.read_idx(folder / files[f"{split}_images"].name, files[f"{split}_images"])
        labels = idx.read_idx(folder / files[f"{split}_labels"].name, files[f"{split}_labels"])
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[:, :, None], "label": int(label)}  # (28, 28, 1)


class CourseMnist(_IdxBuilder):
    SOURCE = idx.SOURCES["mnist"]


class CourseFashionMnist(_IdxBuilder):
    SOURCE = idx.SOURCES["fashion_mnist"]


BUILDERS = {"mnist": "course_mnist", "fashion_mnist": "course_fashion_mnist"}


def _not_prepared_yet(record: logging.LogRecord) -> bool:
    """False for the warning TFDS logs when it checks whether a folder it has yet to prepare is prepared.

    ``tfds.data_source`` asks ``builder.is_prepared()`` first, which logs "Variant folder ... has no
    dataset_info.json" for the folder it is about to fill: on a first load that is the expected state.
    """
    message = record.getMessage()
    return not (message.startswith("Variant folder ") and message.endswith("has no dataset_info.json"))


@contextlib.contextmanager
def _quiet():
    """TFDS's progress bars and INFO logs are noise in a course; our caller prints one line instead."""
    tfds.disable_progress_bar()
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addFilter(_not_prepared_yet)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints "Downloading and preparing ..."
            yield
    finally:
        logger.removeFilter(_not_prepared_yet)
        logger.setLevel(level)


def prepared_dir(source: idx.Source, tfds_dir: Path) -> Path:
    """The folder TFDS prepares ``source`` into."""
    return tfds_dir / BUILDERS[source.name] / str(_IdxBuilder.VERSION)


def prepare_and_read(source: idx.Source, folder: Path, tfds_dir: Path) -> dict[str, np.ndarray]:
    """Prepare ``source`` into ``tfds_dir`` (TFDS skips this when already prepared), then read it all.

    Returns ``{"train_images": (60000, 28, 28, 1) uint8, "train_labels": (60000,) int64, ...}``.
    """
    with _quiet():
        splits = tfds.data_source(
            BUILDERS[source.name],
            data_dir=str(tfds_dir),
            download=True,
            builder_kwargs={"file_format": "array_record"},
            download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=str(folder))},
        )
        out = {}
        for split in ("train", "test"):
            records = splits[split].__getitems__(range(len(splits[split])))
            out[f"{split}_images"] = np.stack([r["image"] for r in records])  # (N, 28, 28, 1)
            out[f"{split}_labels"] = np.asarray([r["label"] for r in records])
    return out
