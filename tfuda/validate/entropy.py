"""Prediction entropy, the one function every entropy in tfuda comes from (validators, alarm, TENT,
SHOT); as a validator, confident target predictions score higher."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def entropies(probs: "np.ndarray | tf.Tensor", epsilon: float = 1e-12) -> "tf.Tensor":
    """Shannon entropy in nats of each row, -sum_k p_k log(p_k + epsilon).

    Args:
      probs: float `[..., K]` (NumPy or TensorFlow, float32 or float64), rows summing to 1.
      epsilon: keeps log finite at p = 0 (SHOT's official code uses 1e-5).

    Returns:
      `[...]`, in the input's float dtype (differentiable).
    """
    import tensorflow as tf  # here: the command lines import the validators before TensorFlow

    p = tf.convert_to_tensor(probs)
    if not p.dtype.is_floating:
        p = tf.cast(p, tf.float32)
    return -tf.reduce_sum(p * tf.math.log(p + tf.cast(epsilon, p.dtype)), axis=-1)


def neg_entropy(probs: np.ndarray, **_) -> float:
    """-mean_i H(p_i). probs: float `[N, K]`, rows summing to 1. In [-log K, 0]."""
    return float(-np.mean(entropies(np.asarray(probs, np.float64))))
