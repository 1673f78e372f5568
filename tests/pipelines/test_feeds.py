import numpy as np
import pytest
import tensorflow as tf

from pipelines.feeds import FeedSpec, apply_views, first_step_at, make_feed, preprocessed_batches, training_progress
from pipelines.sources import open_source
from tests.pipelines.images import labeled_folder

SPEC = FeedSpec(global_batch_size=4, uratio=3, image_size=16, source_views=("weak", "strong"),
                target_views=("weak", "strong"), seed=7)


@pytest.fixture(scope="module")
def sources():
    return open_source("digits"), open_source("digits-m")


def _take(feed, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in feed.take(n)]


def test_feed_structure_shapes_and_dtypes(sources):
    batch = _take(make_feed(*sources, SPEC), 1)[0]
    assert set(batch) == {"seed", "source", "target"}
    assert set(batch["source"]) == {"labels", "weak", "strong"}
    assert batch["source"]["weak"].shape == (4, 16, 16, 3)
    assert batch["target"]["strong"].shape == (12, 16, 16, 3)
    assert batch["target"]["weak"].dtype == np.float32 and batch["source"]["labels"].dtype == np.int64


def test_feed_is_deterministic_and_resumable(sources):
    first = _take(make_feed(*sources, SPEC), 5)
    again = _take(make_feed(*sources, SPEC), 5)
    resumed = _take(make_feed(*sources, SPEC, start_step=3), 2)
    other_seed = _take(make_feed(*sources, FeedSpec(**{**SPEC.__dict__, "seed": 8})), 1)
    for a, b in zip(first, again):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    for a, b in zip(first[3:], resumed):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(first[0]["target"]["weak"], other_seed[0]["target"]["weak"])


def test_on_device_feed_gives_the_same_views(sources):
    device_spec = FeedSpec(**{**SPEC.__dict__, "on_device": True})
    raw = next(iter(make_feed(*sources, device_spec)))
    assert raw["source"]["images"].dtype == tf.uint8
    views = tf.function(lambda b: apply_views(b, device_spec))(raw)
    data_side = next(iter(make_feed(*sources, SPEC)))
    np.testing.assert_allclose(views["target"]["strong"], data_side["target"]["strong"], atol=1e-3)


def test_source_only_feed_has_no_target(sources):
    spec = FeedSpec(global_batch_size=4, uratio=1, image_size=16, source_views=("weak",), target_views=())
    batch = next(iter(make_feed(sources[0], None, spec)))
    assert set(batch) == {"seed", "source"}


def test_epochs_cover_every_example_once(sources):
    source = sources[0]
    n = source.info.num_examples
    labels = np.concatenate([y for _, y in preprocessed_batches(
        source, 64, 8, shuffle_seed=1, repeat=True, drop_remainder=True).take(n // 64).as_numpy_iterator()])
    counts = np.bincount(labels, minlength=10)
    expected = np.bincount([y for _, y in source.dataset().as_numpy_iterator()], minlength=10)
    assert (counts <= expected).all() and counts.sum() == (n // 64) * 64


def test_mixed_size_folder_batches(tmp_path):
    source = open_source(str(labeled_folder(tmp_path / "d", per_class=5)))
    images, labels = next(iter(preprocessed_batches(source, 10, 12)))
    assert images.shape == (10, 12, 12, 3) and images.dtype == tf.uint8
    assert sorted(labels.numpy().tolist()) == [0] * 5 + [1] * 5


def test_a_folder_feed_decodes_each_file_once_and_keeps_its_order(tmp_path, monkeypatch):
    import pipelines.folders
    from pipelines.sources import open_source
    from tests.pipelines.images import labeled_folder

    root = labeled_folder(tmp_path / "data", per_class=5)
    streamed = open_source(str(root))
    monkeypatch.setattr(streamed, "preprocessed", lambda size: None)  # the decode-every-epoch path
    batches = preprocessed_batches(streamed, 4, 16, shuffle_seed=3, repeat=True).take(10)
    expected = [y.numpy().tolist() for _, y in batches]

    decoded = []
    original = pipelines.folders.decode_file

    def counting(path):
        image = original(path)
        counted = tf.py_function(lambda x: decoded.append(1) or x, [image], tf.uint8)
        counted.set_shape([None, None, None])
        return counted

    monkeypatch.setattr(pipelines.folders, "decode_file", counting)
    cached = open_source(str(root))
    batches = list(preprocessed_batches(cached, 4, 16, shuffle_seed=3, repeat=True).take(10))  # 4 epochs
    assert len(decoded) == 10  # each of the 10 files once
    assert [y.numpy().tolist() for _, y in batches] == expected
    assert all(x.shape == (4, 16, 16, 3) and x.dtype == tf.uint8 for x, _ in batches)


def test_a_phase_starts_at_the_step_the_train_step_computes():
    # ceil(0.3 * 10) is 4 in float64 (0.3 * 10 = 3.0000000000000004); the train step's float32
    # progress reaches 0.3 at step 3, and a callback acting at the phase's start must agree.
    assert first_step_at(0.3, 10) == 3
    for total in (6, 10, 30, 1200, 2400, 3333):
        for fraction in (0.1, 0.25, 0.3, 0.5, 0.7, 0.75):
            start = first_step_at(1.0 - fraction, total)
            assert float(training_progress(start, total)) >= np.float32(1.0 - fraction)
            assert start == 0 or float(training_progress(start - 1, total)) < np.float32(1.0 - fraction)
