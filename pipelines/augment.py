"""Seeded, batched image augmentation: weak (flip + translate) and strong (RandAugment + Cutout).

All ops work on a whole batch `[B, H, W, 3]` at once with per-image random parameters and no
Python per image. Randomness is stateless: the same images and `seed` (an int `[2]` tensor)
give the same output, in `tf.data` and in a `tf.function` alike. Parameters are drawn first
(`_draw_*`), then applied, so each op is testable with fixed parameters.

Every op is XLA-compatible (gathers and element-wise math; no `ImageProjectiveTransformV3`),
so with `--augment-on device` the augmentation compiles into the train step.

The strong list is the op set of RandAugment/CTAugment as used by FixMatch and AdaMatch
(random magnitude per image), minus Equalize, whose per-image histogram is costly as a batched
op: identity, autocontrast, brightness, color, contrast, sharpness, posterize, solarize,
invert (in CTAugment, AdaMatch's default), rotate, shear-x/y, translate-x/y.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import tensorflow as tf

FILL_VALUE = 128.0
"""Gray used for pixels uncovered by geometric ops and for Cutout."""


ALG = tf.random.Algorithm.PHILOX
"""Fixed, so the same seed draws the same numbers with and without XLA (`auto_select` differs)."""
_FLOAT_BITS = 2**24


def _split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num, alg=ALG)
    return [seeds[i] for i in range(num)]


Rows = tuple  # (offset: int or int32 scalar tensor, total: int): see `_uniform`


def _uniform(batch, seed, minval=0.0, maxval=1.0, dtype=tf.float32, rows: Rows | None = None) -> tf.Tensor:
    """`[batch]` stateless uniform numbers (one per image), identical with and without XLA
    (floats come from `unit_uniform`).

    `rows = (offset, total)` says that the batch is rows `[offset, offset + batch)` of a global
    batch of `total` images (one replica's slice): the numbers are drawn for all `total` rows and
    sliced, so each image gets the draw it would get in the global batch.
    """
    shape = [batch] if rows is None else [rows[1]]
    if dtype.is_integer:
        values = tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval, dtype=dtype, alg=ALG)
    else:
        values = minval + (maxval - minval) * tf.cast(unit_uniform(shape, seed), dtype)
    return values if rows is None else tf.slice(values, [rows[0]], [batch])


def unit_uniform(shape, seed: tf.Tensor) -> tf.Tensor:
    """float32 stateless uniform numbers in [0, 1), the same with and without XLA.

    Made from 24-bit integer draws: XLA turns random bits into floats differently from
    TensorFlow's kernels, while integer draws agree.
    """
    bits = tf.random.stateless_uniform(shape, seed, minval=0, maxval=_FLOAT_BITS, dtype=tf.int32, alg=ALG)
    return tf.cast(bits, tf.float32) / float(_FLOAT_BITS)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    """[B] -> [B, 1, 1, 1] for broadcasting against a batch."""
    return tf.reshape(values, [-1, 1, 1, 1])


# ---------------------------------------------------------------- geometric ops


def batch_size(images: tf.Tensor):
    """The batch size: static where known (a static slice size keeps `rows` draws XLA-friendly)."""
    return images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]


def random_flip(images: tf.Tensor, seed: tf.Tensor, rows: Rows | None = None) -> tf.Tensor:
    """Flips each image left-right with probability 1/2. images: float32 `[B, H, W, C]`.

    `rows`: see `_uniform` (also for every other random op here).
    """
    flip = _uniform(batch_size(images), seed, rows=rows) < 0.5
    return tf.where(_per_image(flip), tf.reverse(images, axis=[2]), images)


def random_translate(images: tf.Tensor, seed: tf.Tensor, fraction: float, rows: Rows | None = None) -> tf.Tensor:
    """Shifts each image by up to `fraction` of its size: reflect-pad, then a random crop.

    Args:
      images: float32 `[B, H, W, C]` with static H and W.
      seed: int `[2]`.
      fraction: largest shift as a fraction of the side (0.125 = 4 px on 32 px).
    """
    height, width = images.shape[1], images.shape[2]
    pad = min(int(round(fraction * height)), height - 1)
    if pad <= 0:
        return images
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    batch = batch_size(images)
    seed_y, seed_x = _split(seed, 2)
    off_y = _uniform(batch, seed_y, 0, 2 * pad + 1, tf.int32, rows)
    off_x = _uniform(batch, seed_x, 0, 2 * pad + 1, tf.int32, rows)
    rows = off_y[:, None] + tf.range(height)[None, :]
    cols = off_x[:, None] + tf.range(width)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def affine_warp(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour affine warp about the image centre, one matrix per image.

    Args:
      images: float32 `[B, H, W, C]` with static H, W, C.
      matrices: float32 `[B, 2, 3]` mapping centred output (y, x, 1) to centred input (y, x).

    Returns:
      float32 `[B, H, W, C]`; pixels sampled from outside the image are `FILL_VALUE`.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    ys, xs = tf.meshgrid(
        tf.range(height, dtype=tf.float32) - cy,
        tf.range(width, dtype=tf.float32) - cx,
        indexing="ij",
    )
    grid = tf.stack([tf.reshape(ys, [-1]), tf.reshape(xs, [-1]), tf.ones([height * width])])
    src = tf.einsum("bij,jn->bin", matrices, grid)  # [B, 2, H*W]
    src_y = tf.round(src[:, 0] + cy)
    src_x = tf.round(src[:, 1] + cx)
    inside = (src_y >= 0) & (src_y <= height - 1) & (src_x >= 0) & (src_x <= width - 1)
    index = tf.cast(
        tf.clip_by_value(src_y, 0, height - 1) * width + tf.clip_by_value(src_x, 0, width - 1),
        tf.int32,
    )
    flat = tf.reshape(images, [-1, height * width, channels])
    warped = tf.gather(flat, index, batch_dims=1)
    warped = tf.where(inside[..., None], warped, FILL_VALUE)
    return tf.reshape(warped, [-1, height, width, channels])


# ---------------------------------------------------------------- colour ops


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL.ImageEnhance semantics: factor 0 gives `degenerate`, 1 the image, >1 extrapolates."""
    return tf.clip_by_value(degenerate + _per_image(factor) * (images - degenerate), 0.0, 255.0)


def _grayscale(images: tf.Tensor) -> tf.Tensor:
    gray = tf.reduce_sum(images * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    return tf.broadcast_to(gray, tf.shape(images))


def autocontrast(images: tf.Tensor) -> tf.Tensor:
    """Stretches each channel of each image to the full 0..255 range."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1e-3), 1.0)
    return tf.where(high > low, (images - low) * scale, images)


def brightness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blends with black. factor: `[B]`."""
    return _blend(tf.zeros_like(images), images, factor)


def color(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blends with the grayscale image (saturation). factor: `[B]`."""
    return _blend(_grayscale(images), images, factor)


def contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blends with the image's mean gray level. factor: `[B]`."""
    mean = tf.reduce_mean(_grayscale(images), axis=[1, 2, 3], keepdims=True)
    return _blend(tf.broadcast_to(mean, tf.shape(images)), images, factor)


def sharpness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blends with a 3x3-smoothed copy (PIL's SMOOTH kernel); borders keep the original."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    channels = images.shape[-1]
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], padding="SAME")
    height, width = images.shape[1], images.shape[2]
    interior = tf.pad(tf.ones([height - 2, width - 2]), [[1, 1], [1, 1]])[None, :, :, None]
    smooth = interior * smooth + (1.0 - interior) * images
    return _blend(smooth, images, factor)


def posterize(images: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """Keeps the top `bits` bits of each value. bits: float `[B]` in 1..8."""
    step = _per_image(tf.pow(2.0, 8.0 - tf.round(bits)))
    return tf.floor(images / step) * step


def solarize(images: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """Inverts values at or above `threshold` (`[B]`, 0..256)."""
    return tf.where(images >= _per_image(threshold), 255.0 - images, images)


def cutout(images: tf.Tensor, seed: tf.Tensor, max_fraction: float, rows: Rows | None = None) -> tf.Tensor:
    """Fills one random square per image, of side up to `max_fraction` of the image, with gray."""
    batch = batch_size(images)
    height, width = images.shape[1], images.shape[2]
    seed_size, seed_y, seed_x = _split(seed, 3)
    half = _uniform(batch, seed_size, 0.0, max_fraction, rows=rows) * min(height, width) / 2.0
    center_y = _uniform(batch, seed_y, 0.0, float(height), rows=rows)
    center_x = _uniform(batch, seed_x, 0.0, float(width), rows=rows)
    ys = tf.range(height, dtype=tf.float32)[None, :, None] + 0.5
    xs = tf.range(width, dtype=tf.float32)[None, None, :] + 0.5
    inside = (tf.abs(ys - center_y[:, None, None]) < half[:, None, None]) & (
        tf.abs(xs - center_x[:, None, None]) < half[:, None, None]
    )
    return tf.where(inside[..., None], FILL_VALUE, images)


# ---------------------------------------------------------------- RandAugment


def _enhance_factor(m: tf.Tensor, sign: tf.Tensor) -> tf.Tensor:
    return 1.0 + 0.95 * m * sign


# Each op: (images, magnitude [B] in 0..1, sign [B] of +-1) -> images.
_COLOR_OPS: dict[str, Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "identity": lambda x, m, s: x,
    "autocontrast": lambda x, m, s: autocontrast(x),
    "brightness": lambda x, m, s: brightness(x, _enhance_factor(m, s)),
    "color": lambda x, m, s: color(x, _enhance_factor(m, s)),
    "contrast": lambda x, m, s: contrast(x, _enhance_factor(m, s)),
    "sharpness": lambda x, m, s: sharpness(x, _enhance_factor(m, s)),
    "posterize": lambda x, m, s: posterize(x, 8.0 - 4.0 * m),
    "solarize": lambda x, m, s: solarize(x, 256.0 - 256.0 * m),
    "invert": lambda x, m, s: 255.0 - x,
}


def _rotation(m, s, size):
    angle = m * s * (30.0 * math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    zero = tf.zeros_like(m)
    return tf.stack([tf.stack([cos, -sin, zero], -1), tf.stack([sin, cos, zero], -1)], 1)


def _shear(m, s, size, axis):
    shear = m * s * 0.3
    one, zero = tf.ones_like(m), tf.zeros_like(m)
    if axis == "x":  # x_in = x_out + shear * y_out
        rows = [tf.stack([one, zero, zero], -1), tf.stack([shear, one, zero], -1)]
    else:
        rows = [tf.stack([one, shear, zero], -1), tf.stack([zero, one, zero], -1)]
    return tf.stack(rows, 1)


def _shift(m, s, size, axis):
    shift = m * s * 0.3 * size
    one, zero = tf.ones_like(m), tf.zeros_like(m)
    dy, dx = (zero, shift) if axis == "x" else (shift, zero)
    return tf.stack([tf.stack([one, zero, dy], -1), tf.stack([zero, one, dx], -1)], 1)


_GEOMETRIC_OPS: dict[str, Callable[[tf.Tensor, tf.Tensor, float], tf.Tensor]] = {
    "rotate": _rotation,
    "shear_x": lambda m, s, size: _shear(m, s, size, "x"),
    "shear_y": lambda m, s, size: _shear(m, s, size, "y"),
    "translate_x": lambda m, s, size: _shift(m, s, size, "x"),
    "translate_y": lambda m, s, size: _shift(m, s, size, "y"),
}

RANDAUGMENT_OPS: tuple[str, ...] = tuple(_COLOR_OPS) + tuple(_GEOMETRIC_OPS)


def rand_augment(images: tf.Tensor, seed: tf.Tensor, num_ops: int = 2, rows: Rows | None = None) -> tf.Tensor:
    """Applies `num_ops` ops drawn per image from `RANDAUGMENT_OPS`, each with a random magnitude.

    Args:
      images: float32 `[B, H, W, 3]` in 0..255 with static H, W.
      seed: int `[2]`.
      num_ops: ops applied in sequence to each image.

    Every op of the list is computed for the whole batch and each image keeps its own draw, so
    the cost is that of all ops on the batch, with no per-image control flow.
    """
    batch = batch_size(images)
    size = float(images.shape[1])
    color_names, geometric_names = list(_COLOR_OPS), list(_GEOMETRIC_OPS)
    for round_seed in _split(seed, num_ops):
        seed_op, seed_mag, seed_sign = _split(round_seed, 3)
        choice = _uniform(batch, seed_op, 0, len(RANDAUGMENT_OPS), tf.int32, rows)
        magnitude = _uniform(batch, seed_mag, rows=rows)
        sign = tf.where(_uniform(batch, seed_sign, rows=rows) < 0.5, -1.0, 1.0)  # of signed magnitudes
        out = images
        for index, name in enumerate(color_names):
            if name == "identity":
                continue
            chosen = _per_image(tf.equal(choice, index))
            out = tf.where(chosen, _COLOR_OPS[name](images, magnitude, sign), out)
        identity = tf.eye(2, 3, batch_shape=[batch])
        matrices = identity
        for offset, name in enumerate(geometric_names):
            chosen = tf.equal(choice, len(color_names) + offset)[:, None, None]
            matrices = tf.where(chosen, _GEOMETRIC_OPS[name](magnitude, sign, size), matrices)
        is_geometric = choice >= len(color_names)
        images = tf.where(_per_image(is_geometric), affine_warp(images, matrices), out)
    return images


# ---------------------------------------------------------------- policies


@dataclasses.dataclass(frozen=True)
class Augment:
    """The weak and strong augmentation policies of a run.

    Attributes:
      flip: random horizontal flips (off by default: wrong for digits and text; turn it on for
        natural photos).
      translate: largest random shift as a fraction of the image side.
      num_ops: RandAugment ops per image in the strong view.
      cutout: largest Cutout square side as a fraction of the image side (0 turns it off).
    """

    flip: bool = False
    translate: float = 0.125
    num_ops: int = 2
    cutout: float = 0.5

    def weak(self, images: tf.Tensor, seed: tf.Tensor, rows: Rows | None = None) -> tf.Tensor:
        """Weak view: flip (if enabled) and translate. images: uint8/float `[B, H, W, 3]`.

        Returns float32 in 0..255. `rows`: see `_uniform`.
        """
        images = tf.cast(images, tf.float32)
        seed_flip, seed_shift = _split(seed, 2)
        if self.flip:
            images = random_flip(images, seed_flip, rows)
        return random_translate(images, seed_shift, self.translate, rows)

    def strong(self, images: tf.Tensor, seed: tf.Tensor, rows: Rows | None = None) -> tf.Tensor:
        """Strong view: the weak ops, RandAugment, then Cutout. Returns float32 in 0..255."""
        seed_weak, seed_ra, seed_cut = _split(seed, 3)
        images = rand_augment(self.weak(images, seed_weak, rows), seed_ra, self.num_ops, rows)
        if self.cutout > 0:
            images = cutout(images, seed_cut, self.cutout, rows)
        return images

    def views(self, images: tf.Tensor, names: Sequence[str], seed: tf.Tensor,
              rows: Rows | None = None) -> dict[str, tf.Tensor]:
        """Makes the named views of one batch, each with its own sub-seed.

        Args:
          images: uint8 `[B, H, W, 3]` preprocessed images.
          names: view names, each `weak`, `strong` or `strong2` (a second, independent strong
            view, for contrastive learning).
          seed: int `[2]`.
          rows: `(offset, total)` when `images` are rows of a larger global batch (one
            replica's slice): every image then gets the draws it gets in the global batch.

        Returns:
          {name: float32 `[B, H, W, 3]`}.
        """
        seeds = _split(seed, 3)
        makers = {
            "weak": lambda: self.weak(images, seeds[0], rows),
            "strong": lambda: self.strong(images, seeds[1], rows),
            "strong2": lambda: self.strong(images, seeds[2], rows),
        }
        unknown = set(names) - set(makers)
        if unknown:
            raise ValueError(f"unknown view(s) {sorted(unknown)}; known: {sorted(makers)}")
        return {name: makers[name]() for name in names}
