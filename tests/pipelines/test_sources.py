import numpy as np
import pytest
import tensorflow as tf

from pipelines import builtin
from pipelines.errors import DataError
from pipelines.sources import check_same_classes, open_source
from tests.pipelines.images import labeled_folder, write_image, write_truncated


def _opened(spec):
    """(dataset in source order, info) of a spec."""
    source = open_source(spec)
    return source.dataset(), source.info


def test_labeled_folder_with_corrupt_rgba_gray_and_palette_files(tmp_path, capsys):
    root = labeled_folder(tmp_path / "data")
    write_image(root / "dog" / "pal.gif", "P", fmt="GIF")
    bad = write_truncated(root / "cat" / "broken.png")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    ds, info = _opened(str(root))
    assert info.class_names == ("cat", "dog")
    assert info.num_examples == 7 and len(info.skipped) == 2
    assert str(bad) in info.skipped
    warning = capsys.readouterr().err
    assert "skipped 2 unreadable" in warning and "broken.png" in warning and "empty.jpg" in warning
    items = list(ds.as_numpy_iterator())
    assert [int(y) for _, y in items] == [0, 0, 0, 1, 1, 1, 1]
    assert {x.shape[-1] for x, _ in items} == {1, 3, 4}
    assert all(x.dtype == np.uint8 for x, _ in items)


def test_strict_fails_naming_the_file(tmp_path):
    root = labeled_folder(tmp_path / "data")
    write_truncated(root / "cat" / "broken.png")
    with pytest.raises(DataError, match="broken.png"):
        open_source(str(root), strict=True)


def test_validation_is_cached_per_folder(tmp_path, monkeypatch):
    from pipelines import folders

    root = labeled_folder(tmp_path / "data")
    write_truncated(root / "cat" / "broken.png")
    open_source(str(root))

    def no_decoding(path):
        raise AssertionError("decoded although the folder is unchanged")

    monkeypatch.setattr(folders, "_decodes", no_decoding)
    assert open_source(str(root)).info.skipped  # answered from the cache
    write_image(root / "cat" / "new.png")  # a changed folder is validated again
    with pytest.raises(AssertionError, match="decoded although"):
        open_source(str(root))


def test_unlabeled_folder(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", size=(5 + i, 7))
    ds, info = _opened(str(tmp_path))
    assert not info.labeled and info.num_classes is None
    assert [int(y) for _, y in ds.as_numpy_iterator()] == [-1, -1, -1]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "has no"),
    (lambda p: (p / "a").mkdir() or write_image(p / "b" / "1.png") and p, "class folder"),
])
def test_bad_folders_get_clear_errors(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        open_source(str(make(tmp_path)))


def test_unknown_scheme_and_split():
    with pytest.raises(DataError, match="unknown source scheme 'foo:'"):
        open_source("foo:bar")
    with pytest.raises(DataError, match="unknown split"):
        open_source("digits:validation")


def test_npz_labeled_and_unlabeled(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (6, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "l.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]), class_names=np.array(["a", "b", "c"]))
    ds, info = _opened(f"npz:{tmp_path / 'l.npz'}")
    assert info.class_names == ("a", "b", "c") and info.image_shape == (5, 5, 1)
    images, labels = next(iter(ds.batch(6)))
    np.testing.assert_array_equal(images[..., 0], x)
    assert labels.dtype == tf.int64
    np.savez(tmp_path / "u.npz", x=x[..., None].repeat(3, -1))
    _, info = _opened(f"npz:{tmp_path / 'u.npz'}")
    assert not info.labeled and info.image_shape == (5, 5, 3)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 4, 4), np.float32)}, "must be uint8"),
    ({"x": np.zeros((2, 4), np.uint8)}, "must be uint8"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(3, np.int64)}, "'y' must be"),
    ({"images": np.zeros((2, 4, 4), np.uint8)}, "no array 'x'"),
    ({"x": np.array([object(), object()], dtype=object)}, "cannot be read safely"),
])
def test_npz_bad_arrays(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        open_source(f"npz:{path}")


def test_tfds_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        ds, info = _opened("tfds:mnist:test")
        items = list(ds.take(12).as_numpy_iterator())
    assert info.class_names == tuple(str(i) for i in range(10))
    assert info.image_shape == (28, 28, 1) and info.labeled
    assert len(items) == 12 and items[0][0].dtype == np.uint8 and items[0][1].dtype == np.int64
    with tfds.testing.mock_data(num_examples=12):
        labels = open_source("tfds:mnist:test").labels()  # the generic path (SSL carving, class priors)
    assert labels.dtype == np.int64 and labels.shape == (12,) and labels.min() >= 0


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
    with pytest.raises(DataError, match="tfds build mnist"):
        open_source("tfds:mnist", tfds_data_dir=str(tmp_path))


def test_builtins_are_fixed_split_and_disjoint():
    x_train, y_train = builtin.load("digits", "train")
    x_test, y_test = builtin.load("digits", "test")
    assert len(x_train) + len(x_test) == 1797
    assert 0.19 < len(x_test) / 1797 < 0.21
    assert np.bincount(y_test).min() >= 35  # stratified
    m_train, _ = builtin.load("digits-m", "train")
    m_test, my_test = builtin.load("digits-m", "test")
    assert m_train.shape[1:] == (32, 32, 3) and m_test.dtype == np.uint8
    np.testing.assert_array_equal(my_test, y_test)
    info = open_source("digits-m").info
    assert info.held_out == "digits-m:test" and info.num_examples == len(m_train)
    assert open_source("digits-m:test").info.held_out is None


def test_class_mismatch_is_reported():
    source = open_source("digits").info
    from dataclasses import replace

    other = replace(source, spec="x", class_names=("0", "1"))
    with pytest.raises(DataError, match="missing"):
        check_same_classes(source, other, "--eval-target")
