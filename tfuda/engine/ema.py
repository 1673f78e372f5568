"""Exponential moving average of a model's weights, warmed up like tf.train.ExponentialMovingAverage."""

from __future__ import annotations

import keras
import tensorflow as tf


def ema_decay(step: tf.Tensor, decay: float) -> tf.Tensor:
    """min(decay, (1 + t) / (10 + t)): early steps follow the model instead of the random init.

    Negative `t` (before the EMA starts, see `Method.ema_start`) gives 0: the average copies
    the model.
    """
    step = tf.cast(step, tf.float32)
    warm = tf.minimum(decay, (1.0 + step) / (10.0 + tf.maximum(step, 0.0)))
    return tf.where(step < 0.0, 0.0, warm)


class EMA:
    """Keeps `average`, a clone of `model` whose weights track the EMA of `model`'s weights.

    All float weights are averaged, batch-norm statistics included (as in AdaMatch's official
    code); other weights (e.g. seed state) are copied. The clone keeps `model`'s trainable
    flags, so the average (the model a run saves and returns) trains again like any Keras model.
    """

    def __init__(self, model: keras.Model, decay: float = 0.999):
        self.model = model
        self.decay = decay
        self.average = keras.models.clone_model(model)
        self.average.set_weights(model.get_weights())

    def update(self, step: tf.Tensor) -> None:
        """One EMA step; `step` is the (0-based) optimizer step that just finished.

        Under a distribution strategy the update runs once, in cross-replica context, on each
        mirrored copy (the replicas hold the same weights after the synchronised step).
        """
        decay = ema_decay(step, self.decay)
        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            tf.distribute.get_replica_context().merge_call(self._apply, args=(decay,))
        else:
            self._apply(None, decay)

    def _apply(self, strategy: tf.distribute.Strategy | None, decay: tf.Tensor) -> None:
        def step(avg, var, decay):
            if avg.dtype.is_floating:
                return avg.assign(decay * avg + (1.0 - decay) * var)
            return avg.assign(var)

        for avg, var in zip(self.average.weights, self.model.weights):
            if strategy is None:
                step(avg.value, var.value, decay)
            else:
                strategy.extended.update(avg.value, step, args=(var.value, decay), group=False)
