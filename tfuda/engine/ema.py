"""Exponential moving average of a model's weights, warmed up like tf.train.ExponentialMovingAverage."""

from __future__ import annotations

import keras
import tensorflow as tf


def ema_decay(step: tf.Tensor, decay: float) -> tf.Tensor:
    """min(decay, (1 + t) / (10 + t)): early steps follow the model instead of the random init."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(decay, (1.0 + step) / (10.0 + step))


class EMA:
    """Keeps `average`, a clone of `model` whose weights track the EMA of `model`'s weights.

    All float weights are averaged, batch-norm statistics included (as in AdaMatch's official
    code); other weights (e.g. seed state) are copied.
    """

    def __init__(self, model: keras.Model, decay: float = 0.999):
        self.model = model
        self.decay = decay
        self.average = keras.models.clone_model(model)
        self.average.set_weights(model.get_weights())
        self.average.trainable = False

    def update(self, step: tf.Tensor) -> None:
        """One EMA step; `step` is the (0-based) optimizer step that just finished."""
        decay = ema_decay(step, self.decay)
        for avg, var in zip(self.average.weights, self.model.weights):
            if avg.dtype.startswith("float"):
                avg.assign(decay * avg + (1.0 - decay) * var)
            else:
                avg.assign(var)
