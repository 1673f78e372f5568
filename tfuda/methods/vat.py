"""Virtual adversarial training (Miyato, Maeda, Koyama and Ishii, "Virtual Adversarial Training: A
Regularization Method for Supervised and Semi-Supervised Learning", TPAMI 2018;
https://arxiv.org/abs/1704.03976), the smoothness term of VADA/DIRT-T (Shu et al., ICLR 2018).

For images x `[N, H, W, C]` with predictions p = softmax(f(x)) (held fixed):

    d ~ N(0, I), d <- d / ||d||                         (per image, L2 over H, W, C)
    g = grad_d KL(p || softmax(f(x + xi d)))            (one power-iteration step)
    r = eps * 255 * g / ||g||                           (the most sensitive direction)
    L_vat = mean_i KL(p_i || softmax(f(x_i + r_i)))

eps is an L2 radius per image on the [0, 1] pixel scale (tfuda's images are 0..255, hence the
255); DIRT-T's digit models use 3.5. xi is the finite-difference step, on the 0..255 scale (the
paper's 1e-6 is below float32's resolution of pixel values up to 255).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

XI = 1.0
"""Finite-difference step of the power iteration (L2 per image, 0..255 pixel scale)."""


def _unit(d: tf.Tensor) -> tf.Tensor:
    """Each image of `d` `[N, ...]` scaled to L2 norm 1 (first by its largest entry, so that a
    tiny gradient, as of a confident prediction, keeps its direction; all-zero stays zero)."""
    axes = tf.range(1, tf.rank(d))
    d = d / (tf.reduce_max(tf.abs(d), axis=axes, keepdims=True) + 1e-30)
    return d / tf.sqrt(tf.reduce_sum(tf.square(d), axis=axes, keepdims=True) + 1e-12)


def kl_divergence(p: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """KL(p || softmax(logits)) per row, float32 `[N]`; p `[N, K]` rows summing to 1."""
    log_q = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    return tf.reduce_sum(p * (tf.math.log(p + 1e-12) - log_q), axis=1)


def adversarial_direction(logits_fn: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor, p: tf.Tensor,
                          seed: tf.Tensor, xi: float = XI) -> tf.Tensor:
    """The unit direction `[N, H, W, C]` (per image) in which `logits_fn`'s prediction moves most
    from p `[N, K]`: one power-iteration step from a random direction (stateless `seed`)."""
    d = _unit(tf.random.stateless_normal(tf.shape(images), seed))
    with tf.GradientTape() as tape:
        tape.watch(d)
        divergence = tf.reduce_sum(kl_divergence(p, logits_fn(images + xi * d)))
    return _unit(tf.stop_gradient(tape.gradient(divergence, d)))


def virtual_adversarial_loss(logits_fn: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor, seed: tf.Tensor,
                             eps: float) -> tf.Tensor:
    """L_vat, float32 scalar.

    Args:
      logits_fn: images float32 `[N, H, W, C]` (0..255) -> logits `[N, K]` (the model being
        trained; gradients flow through it into the loss). p comes from the same function on the
        clean images, so that only the perturbation differs (batch norm included).
      images: the images x.
      seed: int `[2]`, for the random start.
      eps: L2 radius per image on the [0, 1] scale.
    """
    p = tf.stop_gradient(tf.nn.softmax(tf.cast(logits_fn(images), tf.float32)))
    r = eps * 255.0 * adversarial_direction(logits_fn, images, p, seed)
    return tf.reduce_mean(kl_divergence(p, logits_fn(images + r)))
