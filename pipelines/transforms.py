"""Deterministic image preprocessing shared by training, evaluation, prediction and export.

Every function takes a single image `[H, W, C]` or a batch `[B, H, W, C]` and runs as plain
TensorFlow ops: inside `tf.data.Dataset.map`, inside a `tf.function` on the accelerator, and
inside an exported serving signature, so the deployed model sees exactly what training saw.
"""

from __future__ import annotations

import tensorflow as tf


def to_rgb(images: tf.Tensor) -> tf.Tensor:
    """Makes images 3-channel: gray is tiled, gray+alpha and RGBA lose their alpha channel.

    Args:
      images: `[..., H, W, C]` with C in {1, 2, 3, 4}, static or only known at run time
        (a folder can mix grayscale, RGB and RGBA files). Any dtype.

    Returns:
      `[..., H, W, 3]` of the same dtype.
    """
    images = tf.convert_to_tensor(images)
    channels = images.shape[-1]
    if channels is not None:
        if channels >= 3:
            return images[..., :3]
        return tf.concat([images[..., :1]] * 3, axis=-1)
    rgb = tf.cond(
        tf.shape(images)[-1] >= 3,
        lambda: images[..., :3],
        lambda: tf.concat([images[..., :1]] * 3, axis=-1),
    )
    rgb.set_shape(images.shape[:-1].concatenate([3]))
    return rgb


def resize_with_pad(images: tf.Tensor, size: int, *, antialias: bool = True) -> tf.Tensor:
    """Resizes to `size x size` keeping the aspect ratio, padding the short side with zeros.

    Args:
      images: `[H, W, C]` or `[B, H, W, C]`, any real dtype, any H and W.
      size: output height and width.
      antialias: low-pass filter when shrinking (no effect when enlarging). Turn it off only
        where the runtime lacks the op (TFLite builtins) and the input is already `size`.

    Returns:
      float32 tensor `[size, size, C]` or `[B, size, size, C]` with a static spatial shape
      (the result is reshaped, since `tf.image.resize_with_pad` loses it and TFLite needs it).
    """
    images = tf.convert_to_tensor(images)
    channels = images.shape[-1]
    out = tf.image.resize_with_pad(
        tf.cast(images, tf.float32), size, size, antialias=antialias
    )
    if images.shape.rank == 3:
        return tf.reshape(out, [size, size, -1 if channels is None else channels])
    return tf.reshape(out, [-1, size, size, -1 if channels is None else channels])


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """Rounds float pixel values in 0..255 to uint8, clipping out-of-range values."""
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


def preprocess(images: tf.Tensor, size: int, *, antialias: bool = True) -> tf.Tensor:
    """The training-time preprocessing: to RGB, then resize-with-pad to `size`.

    Args:
      images: uint8 `[H, W, C]` or `[B, H, W, C]`, C in {1, 2, 3, 4}, any H and W.
      size: the model's input size.
      antialias: see `resize_with_pad`.

    Returns:
      uint8 `[size, size, 3]` or `[B, size, size, 3]`.
    """
    return to_uint8(resize_with_pad(to_rgb(images), size, antialias=antialias))
