"""Data sources (``reglab.lab.sources``): every format built from scikit-learn's digits in a
temporary folder reads back as the same numbers, and every refusal says exactly what is wrong
and where."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from reglab.lab.settings.schema import StudyError
from reglab.lab.sources import FORMATS, describe, infer_format, load_source, parse_source


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """300 digits (30 of each class): features 0..16 as float64, labels int64."""
    bunch = load_digits()
    rows = np.concatenate([np.flatnonzero(bunch.target == k)[:30] for k in range(10)])
    rows = np.random.default_rng(0).permutation(rows)
    return bunch.data[rows], bunch.target[rows].astype(np.int64)


def load(folder: Path, **table):
    return load_source(parse_source(table, "s.data", root=folder))  # errors at s.data


def refused(folder: Path, message: str, **table) -> None:
    with pytest.raises(StudyError, match="^" + re.escape(message) + "$"):
        load(folder, **table)


def reference_split(x: np.ndarray, y: np.ndarray, test_size: float = 0.25, seed: int = 0):
    """What the lab must produce without test_path: sklearn's seeded stratified split."""
    return train_test_split(
        x.astype(np.float32), y, test_size=test_size, random_state=seed, stratify=y
    )


def assert_split(data, x_tr, x_te, y_tr, y_te) -> None:
    torch.testing.assert_close(data.x_train, torch.from_numpy(np.asarray(x_tr, np.float32)))
    torch.testing.assert_close(data.x_test, torch.from_numpy(np.asarray(x_te, np.float32)))
    assert torch.equal(data.y_train, torch.from_numpy(np.asarray(y_tr, np.int64)))
    assert torch.equal(data.y_test, torch.from_numpy(np.asarray(y_te, np.int64)))
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64


# -- npz / npy ----------------------------------------------------------------------------
def test_npz_split_equals_sklearns_stratified_split(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(tmp_path, format="npz", path="d.npz", test_size=0.2, split_seed=3)
    assert_split(data, *_order(reference_split(x, y, 0.2, 3)))
    assert (data.features, data.classes, data.image_shape) == (64, 10, None)
    assert data.train_counts == (24,) * 10
    assert data.test_counts == (6,) * 10
    assert data.class_names == tuple(str(k) for k in range(10))


def _order(split):
    x_tr, x_te, y_tr, y_te = split
    return x_tr, x_te, y_tr, y_te


def test_npz_with_test_file_and_own_names_and_images(tmp_path: Path, digits) -> None:
    x, y = digits
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "tr.npz", pixels=x[:200].reshape(-1, 8, 8), target=y[:200])
    np.savez(tmp_path / "sub" / "te.npz", pixels=x[200:].reshape(-1, 8, 8), target=y[200:])
    data = load(
        tmp_path, format="npz", path="sub/tr.npz", test_path="sub/te.npz", x="pixels", y="target"
    )
    assert data.image_shape == (1, 8, 8)
    assert data.x_train.shape == (200, 1, 8, 8)
    assert_split(data, x[:200].reshape(-1, 1, 8, 8), x[200:].reshape(-1, 1, 8, 8), y[:200], y[200:])
    assert data.flat()[0].shape == (200, 64)


def test_npz_image_shape_views_rows(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(tmp_path, format="npz", path="d.npz", image_shape=[1, 8, 8])
    x_tr, _x_te, _, _ = reference_split(x, y)
    torch.testing.assert_close(data.x_train, torch.from_numpy(x_tr).reshape(-1, 1, 8, 8))
    refused(
        tmp_path,
        "s.data.image_shape: must multiply to the 64 features (got [1, 8, 9])",
        format="npz",
        path="d.npz",
        image_shape=[1, 8, 9],
    )


def test_npy_folder(tmp_path: Path, digits) -> None:
    x, y = digits
    np.save(tmp_path / "features.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y.astype(np.uint8))
    data = load(tmp_path, format="npy", path=".", x="features")
    assert_split(data, *_order(reference_split(x, y)))


# -- csv / parquet ------------------------------------------------------------------------
def write_csv(file: Path, x: np.ndarray, labels) -> None:
    with file.open("w", newline="") as stream:
        out = csv.writer(stream)
        out.writerow([f"p{j}" for j in range(x.shape[1])] + ["digit"])
        for row, label in zip(x, labels, strict=True):
            out.writerow([f"{v:g}" for v in row] + [label])


def test_csv_integer_labels(tmp_path: Path, digits) -> None:
    x, y = digits
    write_csv(tmp_path / "d.csv", x, y)
    data = load(tmp_path, format="csv", path="d.csv", label="digit")
    assert_split(data, *_order(reference_split(x, y)))


def test_csv_string_labels_are_numbered_in_sorted_order(tmp_path: Path, digits) -> None:
    x, y = digits
    words = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    write_csv(tmp_path / "d.csv", x, words[y])
    data = load(tmp_path, format="csv", path="d.csv", label="digit", x=["p5", "p9"])
    names = sorted(words.tolist())
    assert data.class_names == tuple(names)
    expected = np.array([names.index(w) for w in words[y]])
    assert_split(data, *_order(reference_split(x[:, [5, 9]], expected)))


def test_parquet(tmp_path: Path, digits) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x, y = digits
    columns = {f"p{j}": x[:, j] for j in range(64)} | {"label": y}
    pq.write_table(pa.table(columns), tmp_path / "d.parquet")
    data = load(tmp_path, format="parquet", path="d.parquet")
    assert_split(data, *_order(reference_split(x, y)))
    columns["p3"] = [str(v) for v in x[:, 3]]
    pq.write_table(pa.table(columns), tmp_path / "s.parquet")
    refused(
        tmp_path,
        "s.data.path: column 'p3' of s.parquet is not numeric (string): row 0 is '0.0' "
        f"(got {str(tmp_path / 's.parquet')!r})",
        format="parquet",
        path="s.parquet",
    )


# -- images -------------------------------------------------------------------------------
def write_pngs(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    from PIL import Image

    for i, (row, label) in enumerate(zip(x, y, strict=True)):
        (folder / f"c{label}").mkdir(parents=True, exist_ok=True)
        pixels = (row.reshape(8, 8) * 15).astype(np.uint8)  # 0..16 -> 0..240
        Image.fromarray(pixels, mode="L").save(folder / f"c{label}" / f"{i:04d}.png")


def test_images_read_back_exactly(tmp_path: Path, digits) -> None:
    x, y = digits
    write_pngs(tmp_path / "imgs", x, y)
    data = load(tmp_path, format="images", path="imgs")
    assert data.image_shape == (1, 8, 8)
    assert data.features == 64
    assert data.class_names == tuple(f"c{k}" for k in range(10))
    # the reader lists classes, then files by name: the digits sorted by (label, index)
    order = np.lexsort((np.arange(len(y)), y))
    pixels = (x[order] * 15).astype(np.uint8).astype(np.float32) / 255.0
    x_tr, x_te, y_tr, y_te = reference_split(pixels.reshape(-1, 1, 8, 8), y[order])
    assert_split(data, x_tr, x_te, y_tr, y_te)
    assert float(data.x_train.max()) <= 1.0


def test_images_resized_to_the_most_common_size(tmp_path: Path, digits) -> None:
    from PIL import Image

    x, y = digits
    write_pngs(tmp_path / "imgs", x, y)
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "imgs" / "c3" / "big.png")
    data = load(tmp_path, format="images", path="imgs", size=[8, 8], channels=1)
    assert data.x_train.shape[1:] == (1, 8, 8)
    data = load(tmp_path, format="images", path="imgs")  # one colour image: RGB for all
    assert data.image_shape == (3, 8, 8)
    red = Image.new("RGB", (20, 10), (255, 0, 0)).resize((8, 8), Image.Resampling.BILINEAR)
    rows = torch.cat([data.x_train, data.x_test])
    want = torch.from_numpy(np.asarray(red, np.float32).transpose(2, 0, 1) / 255.0)
    assert any(torch.equal(r, want) for r in rows)


# -- hf -----------------------------------------------------------------------------------
def test_hf_saved_dataset_and_dataset_dict(tmp_path: Path, digits) -> None:
    ds = pytest.importorskip("datasets")
    x, y = digits
    features = ds.Features(
        {
            "pixels": ds.Sequence(ds.Value("float32")),
            "width": ds.Value("int64"),
            "digit": ds.ClassLabel(names=[f"d{k}" for k in range(10)]),
        }
    )
    table = {"pixels": x.tolist(), "width": [8] * len(y), "digit": y.tolist()}
    ds.Dataset.from_dict(table, features=features).save_to_disk(str(tmp_path / "one"))
    data = load(tmp_path, format="hf", path="one", x="pixels", label="digit")
    assert_split(data, *_order(reference_split(x, y)))
    assert data.class_names == tuple(f"d{k}" for k in range(10))

    half = {k: v[:150] for k, v in table.items()}, {k: v[150:] for k, v in table.items()}
    ds.DatasetDict(
        train=ds.Dataset.from_dict(half[0], features=features),
        test=ds.Dataset.from_dict(half[1], features=features),
    ).save_to_disk(str(tmp_path / "two"))
    data = load(tmp_path, format="hf", path="two", x=["pixels"], label="digit")
    assert_split(data, x[:150], x[150:], y[:150], y[150:])
    refused(
        tmp_path,
        "s.data.split: no such split; the dataset has train, test (got 'training')",
        format="hf",
        path="two",
        x="pixels",
        label="digit",
        split="training",
    )


# -- inspect ------------------------------------------------------------------------------
def test_describe_a_file_and_a_study(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    text = str(describe(tmp_path / "d.npz"))
    assert "rows      300: train 225, test 75" in text
    assert "features  64" in text
    assert "classes   10" in text
    counts = describe(tmp_path / "d.npz").data
    for k in range(10):
        assert f"\n  {k:<5}  {counts.train_counts[k]:>7}  {counts.test_counts[k]:>7}" in text
    study = tmp_path / "mine.toml"
    study.write_text('name = "mine"\n[data]\nformat = "npz"\npath = "d.npz"\nvalidation = 0.2\n')
    summary = describe(study)
    assert summary.sizes == {"train": 180, "validation": 45, "test": 75}
    assert sum(summary.data.train_counts) == 225
    assert infer_format(tmp_path / "d.npz") == {"format": "npz", "path": str(tmp_path / "d.npz")}


# -- refusals -----------------------------------------------------------------------------
def test_registry_and_table_refusals(tmp_path: Path) -> None:
    assert sorted(FORMATS) == ["csv", "hf", "images", "npy", "npz", "parquet"]
    with pytest.raises(
        StudyError,
        match=re.escape("s.data.format: expected one of csv, hf, images, npy, npz, parquet (got"),
    ):
        parse_source({"format": "xlsx", "path": "a"}, "s.data")
    with pytest.raises(
        StudyError,
        match=re.escape("s.data.labels: unknown key; allowed: classes, format, image_shape, "),
    ):
        parse_source({"format": "npz", "path": "a", "labels": "y"}, "s.data")
    (tmp_path / "a.npz").write_bytes(b"")
    source = parse_source(
        {"format": "npz", "path": "a.npz", "validation": 0.1},
        "s.data",
        root=tmp_path,
        ignore=["validation"],
    )
    assert source.path == str(tmp_path / "a.npz")


def test_missing_file(tmp_path: Path) -> None:
    refused(
        tmp_path,
        f"s.data.path: no such file: {tmp_path / 'nope.npz'} (got 'nope.npz')",
        format="npz",
        path="nope.npz",
    )
    (tmp_path / "d").mkdir()
    refused(
        tmp_path,
        f"s.data.test_path: no such folder: {tmp_path / 'e'} (got 'e')",
        format="npy",
        path="d",
        test_path="e",
    )


def test_wrong_array_names(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    refused(
        tmp_path,
        "s.data.x: d.npz has no array 'features'; it has x, y (got 'features')",
        format="npz",
        path="d.npz",
        x="features",
    )
    np.save(tmp_path / "x.npy", x)
    refused(
        tmp_path,
        f"s.data.y: no such file: {tmp_path / 'labels.npy'} (got 'labels')",
        format="npy",
        path=".",
        y="labels",
    )


def test_shape_mismatch(tmp_path: Path, digits) -> None:
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y[:-1])
    refused(
        tmp_path,
        "s.data.y: labels must be one per row: 300 rows of features, labels of shape (299,) "
        f"(got {str(tmp_path / 'd.npz')!r})",
        format="npz",
        path="d.npz",
    )
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x=x[:, :60], y=y)
    refused(
        tmp_path,
        "s.data.test_path: test features have shape (60,) per row, training features (64,) "
        f"(got {str(tmp_path / 'b.npz')!r})",
        format="npz",
        path="a.npz",
        test_path="b.npz",
    )


def test_non_integer_labels(tmp_path: Path, digits) -> None:
    x, y = digits
    labels = y.astype(np.float64)
    labels[7] = 2.5
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    refused(
        tmp_path,
        f"s.data.y: labels must be integers; row 7 has 2.5 (got {str(tmp_path / 'd.npz')!r})",
        format="npz",
        path="d.npz",
    )
    np.savez(tmp_path / "ok.npz", x=x, y=y.astype(np.float64))  # integral floats are fine
    assert load(tmp_path, format="npz", path="ok.npz").classes == 10


def test_labels_out_of_range(tmp_path: Path, digits) -> None:
    x, y = digits
    labels = y.copy()
    labels[4] = -1
    np.savez(tmp_path / "neg.npz", x=x, y=labels)
    refused(
        tmp_path,
        f"s.data.y: labels must be integers in 0..9; row 4 has -1 (got {str(tmp_path / 'neg.npz')!r})",
        format="npz",
        path="neg.npz",
    )
    np.savez(tmp_path / "d.npz", x=x, y=y)
    refused(
        tmp_path,
        f"s.data.y: labels must be integers in 0..7 (classes = 8); row 1 has 9 (got {str(tmp_path / 'd.npz')!r})",
        format="npz",
        path="d.npz",
        classes=8,
    )
    np.savez(tmp_path / "gap.npz", x=x, y=np.where(y == 0, 10, y))  # 1..10: class 0 empty
    refused(
        tmp_path,
        "s.data.y: labels must be 0..C-1 with every class in the training rows; class 0 has "
        f"none (set classes = N to allow empty classes) (got {str(tmp_path / 'gap.npz')!r})",
        format="npz",
        path="gap.npz",
    )
    assert load(tmp_path, format="npz", path="gap.npz", classes=11).train_counts[0] == 0


def test_non_numeric_cell_named_by_line_and_column(tmp_path: Path, digits) -> None:
    x, y = digits
    write_csv(tmp_path / "d.csv", x, y)
    lines = (tmp_path / "d.csv").read_text().splitlines()
    cells = lines[5].split(",")
    cells[12] = "n/a"
    lines[5] = ",".join(cells)
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    refused(
        tmp_path,
        f"s.data.path: line 6, column 'p12' of d.csv is not a number: 'n/a' (got {str(tmp_path / 'd.csv')!r})",
        format="csv",
        path="d.csv",
        label="digit",
    )
    (tmp_path / "e.csv").write_text("")
    refused(
        tmp_path,
        f"s.data.path: e.csv is empty (no header row) (got {str(tmp_path / 'e.csv')!r})",
        format="csv",
        path="e.csv",
    )
    refused(
        tmp_path,
        "s.data.label: d.csv has no column 'label'; it has "
        + ", ".join(f"p{j}" for j in range(64))
        + ", digit (got 'label')",
        format="csv",
        path="d.csv",
    )


def test_too_few_rows_for_the_stratified_split(tmp_path: Path, digits) -> None:
    x, y = digits
    keep = np.concatenate([np.flatnonzero(y != 4), np.flatnonzero(y == 4)[:1]])
    np.savez(tmp_path / "one.npz", x=x[keep], y=y[keep])
    refused(
        tmp_path,
        "s.data.path: class 4 has 1 row; a stratified test split needs at least 2 of every "
        f"class (or give test_path) (got {str(tmp_path / 'one.npz')!r})",
        format="npz",
        path="one.npz",
    )
    np.savez(tmp_path / "d.npz", x=x, y=y)
    refused(
        tmp_path,
        "s.data.test_size: 0.02 of 300 rows leaves 6 test rows, fewer than the 10 classes "
        "(got 0.02)",
        format="npz",
        path="d.npz",
        test_size=0.02,
    )


def test_pickled_object_arrays_refused(tmp_path: Path, digits) -> None:
    x, y = digits
    objects = np.empty(len(y), dtype=object)
    objects[:] = [{"label": int(v)} for v in y]
    np.savez(tmp_path / "d.npz", x=x, y=objects)
    refused(
        tmp_path,
        "s.data.y: array 'y' of d.npz holds Python objects (pickled data); reglab reads "
        "arrays as data only (got 'y')",
        format="npz",
        path="d.npz",
    )
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", objects, allow_pickle=True)
    refused(
        tmp_path,
        "s.data.y: y.npy holds Python objects (pickled data); reglab reads arrays as data "
        "only (got 'y')",
        format="npy",
        path=".",
    )
    import pickle

    (tmp_path / "p.npz").write_bytes(pickle.dumps({"x": x, "y": y}))
    refused(
        tmp_path,
        f"s.data.path: p.npz is not a NumPy .npz archive (got {str(tmp_path / 'p.npz')!r})",
        format="npz",
        path="p.npz",
    )


def test_image_folder_refusals(tmp_path: Path, digits) -> None:
    x, y = digits
    (tmp_path / "empty").mkdir()
    refused(
        tmp_path,
        f"s.data.path: {tmp_path / 'empty'} has no class folders (one folder of images per "
        f"class) (got {str(tmp_path / 'empty')!r})",
        format="images",
        path="empty",
    )
    write_pngs(tmp_path / "imgs", x[:40], y[:40])
    (tmp_path / "imgs" / "zz").mkdir()
    (tmp_path / "imgs" / "zz" / "notes.txt").write_text("no images here")
    refused(
        tmp_path,
        f"s.data.path: class folder 'zz' has no images (got {str(tmp_path / 'imgs')!r})",
        format="images",
        path="imgs",
    )
    (tmp_path / "imgs" / "zz" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(
        StudyError,
        match=r"^s\.data\.path: cannot read image zz/broken\.png: cannot identify image file .*"
        r"\(got '.*/imgs'\)$",
    ):
        load(tmp_path, format="images", path="imgs")


def test_a_source_that_cannot_fail_is_no_test(tmp_path: Path, digits) -> None:
    """The split really is sklearn's: another seed gives other rows."""
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(tmp_path, format="npz", path="d.npz", split_seed=1)
    x_tr, *_ = reference_split(x, y, 0.25, 0)
    assert not torch.equal(data.x_train, torch.from_numpy(x_tr))


# -- every format -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_round_trips_its_table(name: str, tmp_path: Path) -> None:
    cls = FORMATS[name]
    assert cls.name == name
    target = tmp_path / "t"
    if cls.kind == "folder":
        target.mkdir()
    else:
        target.write_bytes(b"")
    source = parse_source({"format": name, "path": "t"}, "s.data", root=tmp_path)
    assert type(source) is cls
    assert source.path == str(target)
    written = {k: v for k, v in source.to_dict().items() if v is not None}  # TOML has no None
    assert cls.parse(written, "s.data") == source
    assert {"format", "path", "test_path", "test_size", "split_seed"} <= set(cls.keys())
    with pytest.raises(StudyError, match=re.escape(f"s.data.format: expected {name!r} (got 'x')")):
        cls.parse({"format": "x", "path": "t"}, "s.data")


def test_hf_image_column_and_string_labels(tmp_path: Path, digits) -> None:
    ds = pytest.importorskip("datasets")
    from PIL import Image

    x, y = digits
    x, y = x[:60], y[:60]
    pictures = [Image.fromarray((r.reshape(8, 8) * 15).astype(np.uint8), mode="L") for r in x]
    words = np.array([f"digit-{k}" for k in range(10)])
    features = ds.Features({"img": ds.Image(), "name": ds.Value("string")})
    ds.Dataset.from_dict(
        {"img": pictures, "name": words[y].tolist()}, features=features
    ).save_to_disk(str(tmp_path / "pics"))
    data = load(tmp_path, format="hf", path="pics", label="name", test_size=0.5)
    assert data.image_shape == (1, 8, 8)
    assert data.class_names == tuple(sorted(words.tolist()))
    pixels = (x * 15).astype(np.uint8).astype(np.float32).reshape(-1, 1, 8, 8) / 255.0
    labels = np.array([sorted(words.tolist()).index(w) for w in words[y]])
    assert_split(data, *_order(reference_split(pixels, labels, 0.5)))


def test_csv_test_file_rows_are_named_by_their_own_lines(tmp_path: Path, digits) -> None:
    x, y = digits
    write_csv(tmp_path / "tr.csv", x[:200], y[:200])
    test_labels = y[200:].copy()
    test_labels[2] = 12
    write_csv(tmp_path / "te.csv", x[200:], test_labels)
    refused(
        tmp_path,
        "s.data.label: labels in test_path must be integers in 0..9; line 4 has 12 "
        f"(got {str(tmp_path / 'tr.csv')!r})",
        format="csv",
        path="tr.csv",
        test_path="te.csv",
        label="digit",
    )
    write_csv(tmp_path / "te.csv", x[200:], y[200:])
    data = load(tmp_path, format="csv", path="tr.csv", test_path="te.csv", label="digit")
    assert_split(data, x[:200], x[200:], y[:200], y[200:])


def test_describe_refuses_a_study_of_a_built_in_dataset(tmp_path: Path) -> None:
    study = tmp_path / "builtin.toml"
    study.write_text('name = "b"\n[data]\nname = "digits"\n')
    with pytest.raises(
        StudyError,
        match=re.escape("builtin.data.format: the study uses a built-in dataset ('name');"),
    ):
        describe(study)


def test_hf_refusals(tmp_path: Path) -> None:
    ds = pytest.importorskip("datasets")
    ds.Dataset.from_dict({"a": [[1, 2], [3]], "label": [0, 1]}).save_to_disk(str(tmp_path / "r"))
    refused(
        tmp_path,
        "s.data.x: rows of column 'a' have different lengths (got 'a')",
        format="hf",
        path="r",
    )
    refused(
        tmp_path,
        "s.data.label: r has no column 'y'; it has a, label (got 'y')",
        format="hf",
        path="r",
        label="y",
    )
    (tmp_path / "plain").mkdir()
    with pytest.raises(StudyError, match=r"^s\.data\.path: not a folder written by save_to_disk: "):
        load(tmp_path, format="hf", path="plain")


def test_infer_format_of_folders(tmp_path: Path, digits) -> None:
    x, y = digits
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert infer_format(tmp_path) == {"format": "npy", "path": str(tmp_path)}
    assert infer_format(tmp_path / "x.npy") == {"format": "npy", "path": str(tmp_path), "x": "x"}
    write_pngs(tmp_path / "imgs", x[:40], y[:40])
    assert infer_format(tmp_path / "imgs")["format"] == "images"
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "state.json").write_text("{}")
    assert infer_format(tmp_path / "saved")["format"] == "hf"
    assert str(describe(tmp_path / "x.npy")).startswith(f"format    npy: {tmp_path}")
    with pytest.raises(
        StudyError, match=re.escape(f"{tmp_path / 'd.xlsx'}: no such file or folder")
    ):
        infer_format(tmp_path / "d.xlsx")
