"""Seeded, batched image augmentation: weak (flip + translate) and strong (RandAugment + Cutout).

All ops work on a whole batch `[B, H, W, 3]` at once with per-image random parameters and no
Python per image. Randomness is stateless: the same images and `seed` (an int `[2]` tensor)
give the same output, in `tf.data` and in a `tf.function` alike. A view draws all its numbers
at once (`uniforms`: one stateless draw, `[count, B]` in [0, 1)) and hands each op its rows, so
each op is testable with fixed numbers and the graph stays small.

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


Rows = tuple  # (offset: int or int32 scalar tensor, total: int): see `uniforms`


def uniforms(seed: tf.Tensor, count: int, batch, rows: Rows | None = None) -> tf.Tensor:
    """float32 `[count, batch]` stateless numbers in [0, 1): `count` per image, from one draw.

    Every random op here takes its numbers from such rows (one draw for a whole view: each draw
    is ~50 graph ops, the cost of building the feed). Identical with and without XLA.

    `rows = (offset, total)` says that the batch is rows `[offset, offset + batch)` of a global
    batch of `total` images (one replica's slice): the numbers are drawn for all `total` images
    and sliced, so each image gets the draw it would get in the global batch.
    """
    values = unit_uniform([count, batch if rows is None else rows[1]], seed)
    return values if rows is None else tf.slice(values, [0, rows[0]], [count, batch])


def _below(u: tf.Tensor, n: int) -> tf.Tensor:
    """int32 floor(u * n): a uniform integer in [0, n) from u in [0, 1)."""
    return tf.minimum(tf.cast(tf.floor(u * n), tf.int32), n - 1)


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


def random_flip(images: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """Flips each image left-right where its number is below 1/2.

    Args:
      images: float32 `[B, H, W, C]`.
      u: float32 `[B]` in [0, 1) (`uniforms`), as every random op here takes its numbers.
    """
    return tf.where(_per_image(u < 0.5), tf.reverse(images, axis=[2]), images)


TRANSLATE_DRAWS = 2


def random_translate(images: tf.Tensor, u: tf.Tensor, fraction: float) -> tf.Tensor:
    """Shifts each image by up to `fraction` of its size: reflect-pad, then a random crop.

    Args:
      images: float32 `[B, H, W, C]` with static H and W.
      u: float32 `[TRANSLATE_DRAWS, B]` in [0, 1): the vertical and horizontal offsets.
      fraction: largest shift as a fraction of the side (0.125 = 4 px on 32 px).
    """
    height, width = images.shape[1], images.shape[2]
    pad = min(int(round(fraction * height)), height - 1)
    if pad <= 0:
        return images
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    off_y, off_x = _below(u[0], 2 * pad + 1), _below(u[1], 2 * pad + 1)
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


CUTOUT_DRAWS = 3


def cutout(images: tf.Tensor, u: tf.Tensor, max_fraction: float) -> tf.Tensor:
    """Fills one random square per image, of side up to `max_fraction` of the image, with gray.

    u: float32 `[CUTOUT_DRAWS, B]` in [0, 1): the side, the centre's row and column.
    """
    height, width = images.shape[1], images.shape[2]
    half = u[0] * max_fraction * min(height, width) / 2.0
    center_y, center_x = u[1] * float(height), u[2] * float(width)
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


RANDAUGMENT_DRAWS = 3
"""Numbers per image and op of `rand_augment`: the op, its magnitude and its sign."""


def rand_augment(images: tf.Tensor, u: tf.Tensor, num_ops: int = 2) -> tf.Tensor:
    """Applies `num_ops` ops drawn per image from `RANDAUGMENT_OPS`, each with a random magnitude.

    Args:
      images: float32 `[B, H, W, 3]` in 0..255 with static H, W.
      u: float32 `[RANDAUGMENT_DRAWS * num_ops, B]` in [0, 1).
      num_ops: ops applied in sequence to each image.

    Every op of the list is computed for the whole batch and each image keeps its own draw, so
    the cost is that of all ops on the batch, with no per-image control flow.
    """
    batch = batch_size(images)
    size = float(images.shape[1])
    color_names, geometric_names = list(_COLOR_OPS), list(_GEOMETRIC_OPS)
    for round_index in range(num_ops):
        u_op, magnitude, u_sign = tf.unstack(u[RANDAUGMENT_DRAWS * round_index:RANDAUGMENT_DRAWS * (round_index + 1)])
        choice = _below(u_op, len(RANDAUGMENT_OPS))
        sign = tf.where(u_sign < 0.5, -1.0, 1.0)  # of signed magnitudes
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


WEAK_DRAWS = 1 + TRANSLATE_DRAWS
"""Numbers per image of the weak view: the flip's and the shift's."""


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

        Returns float32 in 0..255. `rows`: see `uniforms`.
        """
        return self._weak(tf.cast(images, tf.float32), uniforms(seed, WEAK_DRAWS, batch_size(images), rows))

    def _weak(self, images: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        """The weak ops on float32 images with their numbers u `[WEAK_DRAWS, B]`."""
        if self.flip:
            images = random_flip(images, u[0])
        return random_translate(images, u[1:], self.translate)

    def strong(self, images: tf.Tensor, seed: tf.Tensor, rows: Rows | None = None) -> tf.Tensor:
        """Strong view: the weak ops, RandAugment, then Cutout. Returns float32 in 0..255.

        All its numbers come from one draw (`uniforms`)."""
        augmented = RANDAUGMENT_DRAWS * self.num_ops
        u = uniforms(seed, WEAK_DRAWS + augmented + CUTOUT_DRAWS, batch_size(images), rows)
        images = self._weak(tf.cast(images, tf.float32), u[:WEAK_DRAWS])
        images = rand_augment(images, u[WEAK_DRAWS:WEAK_DRAWS + augmented], self.num_ops)
        if self.cutout > 0:
            images = cutout(images, u[WEAK_DRAWS + augmented:], self.cutout)
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
