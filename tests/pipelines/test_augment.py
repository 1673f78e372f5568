import numpy as np
import pytest
import tensorflow as tf

from pipelines import augment
from pipelines.augment import Augment

SEED = tf.constant([3, 4], tf.int64)


def _numbers(count, n):
    return augment.uniforms(SEED, count, n)


def _batch(n=8, size=32, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_views_are_deterministic_under_a_seed(view):
    images = _batch()
    policy = Augment(flip=True)
    a = getattr(policy, view)(images, SEED)
    b = getattr(policy, view)(images, SEED)
    c = getattr(policy, view)(images, tf.constant([3, 5], tf.int64))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == tf.float32 and a.shape == images.shape
    assert float(tf.reduce_min(a)) >= 0 and float(tf.reduce_max(a)) <= 255


def test_translate_is_a_shift_of_the_reflect_padded_image():
    images = tf.cast(_batch(4, 16), tf.float32)
    out = augment.random_translate(images, _numbers(2, 4), 0.125).numpy()
    padded = np.pad(images.numpy(), [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    for i in range(4):
        assert any(np.array_equal(out[i], padded[i, dy:dy + 16, dx:dx + 16])
                   for dy in range(5) for dx in range(5))


def test_flip_flips_whole_images_only():
    images = tf.cast(_batch(16), tf.float32)
    out = augment.random_flip(images, _numbers(1, 16)[0]).numpy()
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images.numpy())]
    kept = [np.array_equal(o, i) for o, i in zip(out, images.numpy())]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_affine_identity_and_rotation():
    images = tf.cast(_batch(2, 9), tf.float32)
    identity = tf.eye(2, 3, batch_shape=[2])
    np.testing.assert_array_equal(augment.affine_warp(images, identity), images)
    # 180 degrees about the centre == flipping both axes.
    rot = tf.constant([[[-1.0, 0, 0], [0, -1.0, 0]]] * 2)
    np.testing.assert_array_equal(augment.affine_warp(images, rot), images.numpy()[:, ::-1, ::-1])


def test_colour_ops_endpoints():
    images = tf.cast(_batch(2), tf.float32)
    np.testing.assert_allclose(augment.brightness(images, tf.zeros([2])), 0)
    np.testing.assert_allclose(augment.contrast(images, tf.ones([2])), images, atol=1e-4)
    gray = augment.color(images, tf.zeros([2])).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-4)
    np.testing.assert_array_equal(augment.solarize(images, tf.fill([2], 256.0)), images)
    posterized = augment.posterize(images, tf.fill([2], 1.0)).numpy()
    assert set(np.unique(posterized)) <= {0.0, 128.0}
    stretched = augment.autocontrast(images * 0.5 + 10).numpy()
    assert stretched.min() == pytest.approx(0) and stretched.max() == pytest.approx(255)


def test_cutout_fills_one_gray_square():
    images = tf.zeros([6, 32, 32, 3])
    out = augment.cutout(images, _numbers(3, 6), 0.5).numpy()
    for image in out:
        ys, xs = np.nonzero(image[..., 0] == augment.FILL_VALUE)
        if len(ys):  # a filled, axis-aligned rectangle no larger than half the side
            assert len(ys) == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
            assert np.ptp(ys) + 1 <= 17 and np.ptp(xs) + 1 <= 17


def test_rand_augment_changes_images_and_compiles_with_xla():
    images = tf.cast(_batch(16), tf.float32)
    out = augment.rand_augment(images, _numbers(6, 16)).numpy()
    changed = [not np.array_equal(o, i) for o, i in zip(out, images.numpy())]
    assert sum(changed) >= 10
    compiled = tf.function(lambda x, s: Augment().strong(x, s), jit_compile=True)
    np.testing.assert_allclose(compiled(images, SEED), Augment().strong(images, SEED), atol=1e-3)


def test_numbers_of_a_replicas_rows_are_those_of_the_global_batch():
    whole = augment.uniforms(SEED, 5, 12).numpy()
    np.testing.assert_array_equal(augment.uniforms(SEED, 5, 4, rows=(8, 12)), whole[:, 8:])
    assert whole.min() >= 0 and whole.max() < 1 and len(np.unique(whole)) == whole.size
    assert 0.4 < whole.mean() < 0.6


def test_a_strong_view_draws_its_numbers_at_once():
    # Each stateless draw adds ~50 graph ops: the strong view draws once (after its seed's split),
    # so building a feed's graph stays cheap.
    strong = tf.function(lambda x, s: Augment().views(x, ["strong"], s)["strong"], autograph=False)
    graph = strong.get_concrete_function(tf.TensorSpec([8, 32, 32, 3], tf.uint8), tf.TensorSpec([2], tf.int64)).graph
    draws = [op for op in graph.get_operations() if op.type.startswith("StatelessRandom")]
    assert len(draws) <= 4, [op.type for op in draws]
    assert len(graph.get_operations()) < 1200


def test_views_work_inside_dataset_map_and_function_alike():
    images = _batch(4)
    policy = Augment()
    eager = policy.views(images, ("weak", "strong"), SEED)
    ds = tf.data.Dataset.from_tensors(images).map(lambda x: policy.views(x, ("weak", "strong"), SEED))
    in_map = next(iter(ds))
    for name in ("weak", "strong"):
        np.testing.assert_allclose(eager[name], in_map[name], atol=1e-4)
    with pytest.raises(ValueError, match="unknown view"):
        policy.views(images, ("medium",), SEED)
