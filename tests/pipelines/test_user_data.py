"""`pipelines.from_dataset`: a user's tf.data.Dataset as a Source, every element format and bad input."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines.errors import DataError
from pipelines.sources import open_source
from pipelines.user_data import from_dataset

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (12, 9, 7, 3)).astype(np.uint8)
LABELS = np.arange(12) % 3


def elements(source, **kwargs):
    return [(x.numpy(), int(y)) for x, y in source.dataset(**kwargs)]


@pytest.mark.parametrize("make", [
    lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)),
    lambda: tf.data.Dataset.from_tensor_slices({"image": IMAGES, "label": LABELS}),
    lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(5),  # unbatched
    lambda: tf.data.Dataset.from_tensor_slices((IMAGES.astype(np.float32), LABELS.astype(np.int32))),
], ids=["tuple", "dict", "batched", "float-0..255"])
def test_labeled_formats_give_the_same_uint8_elements(make):
    source = from_dataset(make(), ["a", "b", "c"], name="mine")
    assert source.info.spec == "dataset:mine"
    assert source.info.class_names == ("a", "b", "c") and source.info.num_examples == 12
    assert source.info.image_shape == (9, 7, 3)
    got = elements(source)
    np.testing.assert_array_equal(np.stack([x for x, _ in got]), IMAGES)
    assert [y for _, y in got] == LABELS.tolist()
    np.testing.assert_array_equal(source.labels(), LABELS)


def test_unlabeled_gray_images_get_a_channel_and_label_minus_one():
    source = from_dataset(tf.data.Dataset.from_tensor_slices(IMAGES[..., 0]))
    assert not source.info.labeled and source.info.image_shape == (9, 7, 1)
    got = elements(source)
    assert got[0][0].shape == (9, 7, 1) and {y for _, y in got} == {-1}


def test_float_images_are_rounded_and_clipped_to_uint8():
    images = np.array([[[[-3.0], [0.4], [0.6], [254.6], [300.0]]]], np.float32)  # [1, 1, 5, 1]
    (x, _), = elements(from_dataset(tf.data.Dataset.from_tensor_slices(images)))
    assert x[0, :, 0].tolist() == [0, 0, 1, 255, 255]


def test_images_of_different_sizes_are_accepted():
    gen = lambda: (np.zeros((h, 5, 3), np.uint8) for h in (4, 6))  # noqa: E731
    ds = tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec([None, 5, 3], tf.uint8))
    source = from_dataset(ds)
    assert source.info.image_shape == (None, 5, 3) and not source.info.fixed_shape
    assert [x.shape for x, _ in elements(source)] == [(4, 5, 3), (6, 5, 3)]


def test_shuffle_is_seeded():
    source = from_dataset(tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)), 3)
    first = [y for _, y in elements(source, shuffle_seed=4)]
    assert first == [y for _, y in elements(source, shuffle_seed=4)]
    assert sorted(first) == sorted(LABELS.tolist())


def test_images_scaled_to_0_1_warn():
    with pytest.warns(UserWarning, match="look scaled to 0..1.*multiply by 255"):
        from_dataset(tf.data.Dataset.from_tensor_slices(IMAGES / 255.0), argument="target")


@pytest.mark.parametrize("make, class_names, message", [
    (lambda: IMAGES, None, "expected a tf.data.Dataset, got ndarray"),
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS, LABELS)), 3, "elements must be"),
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)), None, "give class_names"),
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS + 1)), 3, r"labels must be in \[0, 3\).*found 1..3"),
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, np.eye(12)[:, :3])), 3, "one-hot labels: take argmax"),
    (lambda: tf.data.Dataset.from_tensor_slices(IMAGES.astype(str)), None, "uint8 or float"),
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).take(0), 3, "is empty"),
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)), ["a", "a", "b"], "duplicates"),
], ids=["array", "structure", "no-class-names", "label-range", "one-hot", "strings", "empty", "duplicate-names"])
def test_bad_datasets_name_the_argument_and_the_fix(make, class_names, message):
    with pytest.raises(DataError, match=f"^source: .*{message}"):
        from_dataset(make(), class_names, argument="source")


def test_a_dataset_spec_is_recorded_but_not_reopened():
    with pytest.raises(DataError, match="was a tf.data.Dataset given to the Python API"):
        open_source("dataset:source")


def class_sorted(classes=3, per_class=10_000):
    labels = np.repeat(np.arange(classes), per_class)
    images = np.broadcast_to(labels[:, None, None, None].astype(np.uint8), (len(labels), 4, 4, 1))
    return tf.data.Dataset.from_tensor_slices((images, labels))


def test_a_class_sorted_dataset_larger_than_the_shuffle_buffer_trains_on_mixed_batches():
    from pipelines.feeds import preprocessed_batches

    source = from_dataset(class_sorted(), 3)
    assert source.info.num_examples > source.SHUFFLE_BUFFER
    _, labels = next(iter(preprocessed_batches(source, 64, 8, shuffle_seed=0, repeat=True)))
    counts = np.bincount(labels.numpy(), minlength=3)
    assert counts.min() >= 8, counts  # about 21 each; a 10,000-buffer over sorted data gives class 0 only


def test_subsets_labels_and_skips_of_an_in_memory_dataset_decode_it_once(monkeypatch):
    reads = []
    data = class_sorted(per_class=50).map(lambda x, y: (tf.py_function(lambda v: reads.append(1) or v, [x], tf.uint8),
                                                        y))
    data = data.map(lambda x, y: (tf.ensure_shape(x, (4, 4, 1)), y))
    source = from_dataset(data, 3)
    reads.clear()
    subset = source.subset([0, 60, 120], "three")
    for _ in range(3):
        list(subset.dataset(shuffle_seed=1, repeat=False).as_numpy_iterator())
    source.labels()
    list(source.dataset(shuffle_seed=0, repeat=True, skip=140).take(5).as_numpy_iterator())
    assert len(reads) == 150  # one pass over the 150 images, when first used
    assert [int(y) for _, y in subset.dataset().as_numpy_iterator()] == [0, 1, 2]


def test_a_dataset_too_large_for_memory_streams_with_a_warning(monkeypatch, capsys):
    import pipelines.sources

    monkeypatch.setattr(pipelines.sources, "MEMORY_BUDGET", 100)
    source = from_dataset(class_sorted(), 3)
    source.dataset(shuffle_seed=0)
    assert "batches will be class-skewed" in capsys.readouterr().err
