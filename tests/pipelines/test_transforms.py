import numpy as np
import pytest
import tensorflow as tf

from pipelines.transforms import preprocess, resize_with_pad, to_rgb


def test_to_rgb_static_channels():
    gray = tf.constant(np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)[..., :1])
    rgb = to_rgb(gray)
    assert rgb.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    rgba = tf.constant(np.random.default_rng(0).integers(0, 255, (2, 4, 4, 4), dtype=np.uint8))
    np.testing.assert_array_equal(to_rgb(rgba), rgba[..., :3])
    gray_alpha = rgba[..., :2]
    np.testing.assert_array_equal(to_rgb(gray_alpha)[..., 1], rgba[..., 0])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_to_rgb_dynamic_channels(channels):
    fn = tf.function(to_rgb, input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    image = np.random.default_rng(channels).integers(0, 255, (5, 6, channels), dtype=np.uint8)
    out = fn(image).numpy()
    assert out.shape == (5, 6, 3)
    np.testing.assert_array_equal(out[..., 0], image[..., 0])


def test_resize_with_pad_keeps_aspect_ratio_and_static_shape():
    # A white 10x40 image in a 32x32 frame: 8 rows of image, centred, black padding around.
    image = tf.fill([10, 40, 1], 255.0)
    out = resize_with_pad(image, 32)
    assert out.shape == (32, 32, 1) and out.dtype == tf.float32
    rows = out.numpy()[:, 16, 0]
    assert rows[:11].max() < 1 and rows[21:].max() < 1
    assert rows[13:19].min() > 254
    batch = resize_with_pad(tf.zeros([3, 7, 9, 3], tf.uint8), 16)
    assert batch.shape == (3, 16, 16, 3)


def test_resize_with_pad_static_shape_inside_function():
    fn = tf.function(lambda x: resize_with_pad(x, 24),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    traced = fn.get_concrete_function()
    assert traced.structured_outputs.shape.as_list() == [None, 24, 24, 3]


def test_preprocess_dtype_range_and_gray_tiling():
    digits = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8))
    out = preprocess(digits, 32)
    assert out.dtype == tf.uint8 and out.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    # Upscaling 8 -> 32 preserves the value range (bilinear, no overshoot).
    assert out.numpy().max() <= digits.numpy().max()
