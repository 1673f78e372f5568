"""Virtual mixup training (Mao, Ma, Yang, Chen and Li, "Virtual Mixup Training for Unsupervised
Domain Adaptation", 2019; https://arxiv.org/abs/1905.04215): the model's prediction on a mixture
of two target images should be the same mixture of its predictions on them, which pushes its
decision boundaries away from the data between clusters (the cluster assumption, as VAT does
around each image).

For images x `[N, H, W, C]` with logits z = f(x) (held fixed):

    j = a seeded permutation of the batch,   lambda_i ~ U(0, 1)  (Beta(1, 1), the paper's alpha)
    x~_i = lambda_i x_i + (1 - lambda_i) x_j
    z~_i = lambda_i z_i + (1 - lambda_i) z_j         (logits, as the official code mixes them)
    L_vmt = mean_i KL(softmax(z~_i) || softmax(f(x~_i)))

The official code minimises the cross-entropy of the same pair, which differs from the KL by the
fixed targets' entropy (the same gradients); the KL is 0 where the model is linear between images.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from tfuda.methods.vat import kl_divergence


def mix(images: tf.Tensor, logits: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`(mixed images [N, H, W, C], mixed logits [N, K])`: each row with a partner from a seeded
    permutation of the batch, in a proportion lambda ~ U(0, 1) per row (stateless `seed` int `[2]`)."""
    count = tf.shape(images)[0]
    partner = tf.argsort(tf.random.stateless_uniform([count], seed))
    lam = tf.random.stateless_uniform([count], tf.random.experimental.stateless_fold_in(seed, 1))
    lam_images = tf.cast(tf.reshape(lam, [-1, 1, 1, 1]), images.dtype)
    lam_logits = tf.cast(lam[:, None], logits.dtype)
    mixed_images = lam_images * images + (1.0 - lam_images) * tf.gather(images, partner)
    mixed_logits = lam_logits * logits + (1.0 - lam_logits) * tf.gather(logits, partner)
    return mixed_images, mixed_logits


def virtual_mixup_loss(logits_fn: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """L_vmt, float32 scalar.

    Args:
      logits_fn: images float32 `[N, H, W, C]` (0..255) -> logits `[N, K]` (the model being
        trained; gradients flow through it on the mixed images). z comes from the same function on
        the images as given, so that only the mixing differs (batch norm included).
      images: the images x.
      seed: int `[2]`, for the partners and proportions.
    """
    logits = tf.stop_gradient(tf.cast(logits_fn(images), tf.float32))
    mixed_images, mixed_logits = mix(images, logits, seed)
    return tf.reduce_mean(kl_divergence(tf.nn.softmax(mixed_logits), logits_fn(mixed_images)))
