"""MNIST through TFDS without TensorFlow: offline first, verified, cached, and loud about bad files."""

import functools
import gzip
import http.server
import importlib.util
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from course import idx, mnist
from course.errors import DataError

FILES = [f.name for f in idx.SOURCES["mnist"].files.values()]


def idx_reference(path: Path) -> np.ndarray:
    """An independent IDX reader: big-endian header of 4 + 4·ndim bytes, then uint8 data."""
    data = gzip.open(path).read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data[4 + 4 * ndim :], np.uint8).reshape(shape)


def leftovers(cache: Path) -> list[str]:
    """Files in a cache that a failed load must not leave: arrays, temporaries, partial downloads."""
    return sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.is_file() and (p.suffix in (".npz", ".tmp", ".part") or "incomplete" in str(p))
    )


def test_tensorflow_is_not_installed():
    assert importlib.util.find_spec("tensorflow") is None, "the course must work without TensorFlow"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_checksums_are_tfds_registered_ones(name):
    """The sizes and sha256 we verify against are the ones TFDS registers for the official files."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    registry = Path(spec.submodule_search_locations[0]) / "url_checksums" / f"{name}.txt"
    registered = {}
    for line in registry.read_text().splitlines():
        url, size, sha, filename = line.split("\t")
        registered[filename] = (url, int(size), sha)
    source = idx.SOURCES[name]
    for raw in source.files.values():
        url, size, sha = registered[raw.name]
        assert (url, size, sha) == (source.url + raw.name, raw.size, raw.sha256)


@pytest.fixture(scope="module")
def first_load(mnist_data_dir, tmp_path_factory):
    """A fresh process's first load into an empty cache, as a student's is: the cache, and all it printed."""
    cache = tmp_path_factory.mktemp("cache")
    code = f"from course import mnist; mnist.load(data_dir={str(mnist_data_dir)!r}, cache={str(cache)!r})"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return cache, run.stdout + run.stderr


@pytest.fixture(scope="module")
def prepared(first_load, mnist_data_dir):
    cache, _ = first_load
    return cache, mnist.load("mnist", data_dir=mnist_data_dir, cache=cache)


def test_the_first_load_prints_only_the_course_line(first_load):
    # TFDS's own logging (e.g. absl's "Variant folder ... has no dataset_info.json" before it
    # prepares) is noise to a student: the course says what is happening in one line of its own.
    _, output = first_load
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Preparing MNIST with TFDS in "), output


def test_load_gives_the_official_arrays(prepared, mnist_data_dir):
    _, data = prepared
    assert data.train.images.shape == (60000, 28, 28, 1) and data.train.images.dtype == np.uint8
    assert data.test.images.shape == (10000, 28, 28, 1)
    assert data.train.labels.shape == (60000,) and data.train.labels.dtype == np.int32
    folder = mnist_data_dir / "mnist"
    # Same pixels and labels, in the same order, as an independent reading of the IDX files.
    np.testing.assert_array_equal(data.train.images[..., 0], idx_reference(folder / "train-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(data.test.images[..., 0], idx_reference(folder / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(data.train.labels, idx_reference(folder / "train-labels-idx1-ubyte.gz"))
    np.testing.assert_array_equal(data.test.labels, idx_reference(folder / "t10k-labels-idx1-ubyte.gz"))
    assert data.class_names == tuple("0123456789")


def test_the_prepared_data_are_a_tfds_data_source(prepared):
    import tensorflow_datasets as tfds

    from course import _tfds_builders  # registers the builders

    cache, data = prepared
    source = tfds.data_source(
        _tfds_builders.BUILDERS["mnist"], split="test", data_dir=str(cache / "tfds"), download=False
    )
    assert len(source) == 10000
    record = source[123]
    np.testing.assert_array_equal(record["image"], data.test.images[123])
    assert record["label"] == data.test.labels[123]


def test_second_load_reads_only_the_cache(prepared, tmp_path):
    cache, data = prepared
    # No raw files, downloading forbidden, and TFDS never imported: only the cached arrays are read.
    code = (
        "import sys; from course import mnist; "
        f"d = mnist.load(data_dir={str(tmp_path)!r}, cache={str(cache)!r}, download=False); "
        "print(d.train.images.shape, int(d.train.labels.sum()), 'tensorflow_datasets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(60000,", "28,", "28,", "1)", str(int(data.train.labels.sum())), "False"]


def test_without_tfds_the_idx_files_give_the_same_arrays(prepared, mnist_data_dir, tmp_path):
    # A machine with JAX alone (a GPU box: no tensorflow_datasets, no array_record) still loads MNIST:
    # the verified IDX arrays are cached directly, and they are the TFDS path's, dtype for dtype.
    _, data = prepared
    cache = tmp_path / "cache"
    code = (
        "import sys; sys.modules['tensorflow_datasets'] = None; from course import mnist; "
        f"mnist.load(data_dir={str(mnist_data_dir)!r}, cache={str(cache)!r}); "
        "print('tfds imported:', sys.modules['tensorflow_datasets'] is not None)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2 and "TFDS is the usual path and was not found" in lines[0], run.stdout + run.stderr
    assert lines[1] == "tfds imported: False"
    assert not (cache / "tfds").exists()
    fallback = mnist.load("mnist", data_dir=tmp_path / "nothing", cache=cache, download=False)
    assert fallback.train.images.shape == (60000, 28, 28, 1) and fallback.train.labels.shape == (60000,)
    for got, want in [(fallback.train, data.train), (fallback.test, data.test)]:
        for a, b in [(got.images, want.images), (got.labels, want.labels)]:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_a_damaged_cache_is_rebuilt(prepared, mnist_data_dir):
    cache, data = prepared
    arrays = next((cache / "arrays").glob("*.npz"))
    arrays.write_bytes(b"not an npz")
    again = mnist.load("mnist", data_dir=mnist_data_dir, cache=cache)
    np.testing.assert_array_equal(again.test.labels, data.test.labels)
    assert np.load(arrays)["test_labels"].shape == (10000,)


# ----------------------------------------------------------------------------------------- bad files


def _copy_of(mnist_data_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in FILES:
        (folder / name).symlink_to(mnist_data_dir / "mnist" / name)
    return folder


LABELS = "t10k-labels-idx1-ubyte.gz"


def _damage(folder: Path, how: str, source: Path) -> None:
    target = folder / LABELS
    good = (source / LABELS).read_bytes()
    content = gzip.decompress(good)
    target.unlink()
    if how == "missing":
        return
    if how == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif how == "corrupt gzip":
        middle = len(good) // 2
        target.write_bytes(good[:middle] + bytes(b ^ 0xFF for b in good[middle : middle + 64]) + good[middle + 64 :])
    elif how == "not gzip":
        target.write_bytes(b"<html>404 Not Found</html>")
    elif how == "wrong magic":
        target.write_bytes(gzip.compress(gzip.decompress((source / "t10k-images-idx3-ubyte.gz").read_bytes())))
    elif how == "wrong shape":
        target.write_bytes(gzip.compress(gzip.decompress((source / "train-labels-idx1-ubyte.gz").read_bytes())))
    elif how == "wrong checksum":
        changed = bytearray(content)
        changed[-1] = (changed[-1] + 1) % 10  # one label differs: still a well-formed IDX file
        target.write_bytes(gzip.compress(bytes(changed)))
    elif how == "recompressed":
        target.write_bytes(gzip.compress(content, compresslevel=1, mtime=0))


BAD = {
    "missing": f"is missing {LABELS}",
    "truncated": "is truncated",
    "corrupt gzip": "is not a valid gzip file",
    "not gzip": "is not a valid gzip file",
    "wrong magic": "has magic number 2051, but a label IDX file starts with 2049",
    "wrong shape": r"holds an array of shape \(60000,\), expected \(10000,\)",
    "wrong checksum": "fails its checksum",
}


@pytest.mark.parametrize("how,says", list(BAD.items()), ids=list(BAD))
def test_a_bad_file_is_named_and_leaves_no_cache(mnist_data_dir, tmp_path, how, says):
    folder = _copy_of(mnist_data_dir, tmp_path)
    _damage(folder, how, mnist_data_dir / "mnist")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=says) as info:
        mnist.load("mnist", data_dir=folder.parent, cache=cache)
    assert str(folder) in str(info.value), "the error names the folder or file"
    assert LABELS in str(info.value)
    assert not cache.exists() or leftovers(cache) == []


def test_a_recompressed_copy_of_the_official_bytes_is_accepted(mnist_data_dir, tmp_path):
    # Debian's Fashion-MNIST package is such a copy: other gzip bytes, the same content.
    folder = _copy_of(mnist_data_dir, tmp_path)
    _damage(folder, "recompressed", mnist_data_dir / "mnist")
    _, arrays = mnist.read_raw("mnist", data_dir=folder.parent, cache=tmp_path / "cache")
    np.testing.assert_array_equal(arrays["test_labels"], idx_reference(mnist_data_dir / "mnist" / LABELS))


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_from_debians_copy(tmp_path):
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    for name in FILES:
        (folder / name).symlink_to(Path("/usr/share/datasets/fashion-mnist") / name)
    _, arrays = mnist.read_raw("fashion_mnist", data_dir=tmp_path, cache=tmp_path / "cache")
    assert arrays["train_images"].shape == (60000, 28, 28)
    assert np.bincount(arrays["test_labels"]).tolist() == [1000] * 10


# ------------------------------------------------------------------------------------- no local copy


def test_offline_without_a_copy_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        mnist.load("mnist", cache=tmp_path)
    message = str(info.value)
    assert "downloading is off" in message and "COURSE_DATA_DIR" in message
    assert all(name in message for name in FILES)
    assert leftovers(tmp_path) == []


def test_an_unreachable_network_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="could not be downloaded") as info:
        mnist.load("mnist", cache=tmp_path / "cache", mirror="http://127.0.0.1:9/")  # port 9: refused
    message = str(info.value)
    assert f"COURSE_DATA_DIR={tmp_path / 'empty'} has no mnist/ folder" in message
    assert all(name in message for name in FILES)
    assert leftovers(tmp_path) == []


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server standing in for the official mirror; serves the folder it returns."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_online_files_are_downloaded_once_and_verified(mnist_data_dir, tmp_path, monkeypatch, mirror):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    folder, url = mirror
    for name in FILES:
        shutil.copy(mnist_data_dir / "mnist" / name, folder / name)
    cache = tmp_path / "cache"
    where, arrays = mnist.read_raw("mnist", cache=cache, mirror=url)
    assert where == cache / "downloads" / "mnist"
    assert sorted(p.name for p in where.iterdir()) == sorted(FILES)
    # Second time: the mirror is gone and downloading is off; the downloaded copies serve.
    for name in FILES:
        (folder / name).unlink()
    _, again = mnist.read_raw("mnist", cache=cache, download=False)
    np.testing.assert_array_equal(again["train_labels"], arrays["train_labels"])


def test_a_bad_download_is_named_and_not_kept(mnist_data_dir, tmp_path, monkeypatch, mirror):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    folder, url = mirror
    for name in FILES:
        shutil.copy(mnist_data_dir / "mnist" / name, folder / name)
    good = (folder / LABELS).read_bytes()
    (folder / LABELS).write_bytes(good[:1000])  # the connection "dropped"
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"{LABELS}.* is truncated"):
        mnist.read_raw("mnist", cache=cache, mirror=url)
    assert LABELS not in [p.name for p in (cache / "downloads" / "mnist").iterdir()]
    assert leftovers(cache) == []


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    def explode(out, **arrays):
        out.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    path = tmp_path / "arrays" / "mnist.npz"
    with pytest.raises(OSError, match="disk full"):
        mnist._atomic_savez(path, a=np.zeros(3))
    assert list((tmp_path / "arrays").iterdir()) == []


def test_course_run_without_data_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from course.cli import main

    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    assert main(["run", "lab06", "--impl", "solutions", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("course: MNIST is not here") and "COURSE_DATA_DIR" in err and "Traceback" not in err
