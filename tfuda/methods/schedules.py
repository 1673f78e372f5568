"""Learning-rate schedules."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfuda")
class CosineDecayTo(keras.optimizers.schedules.LearningRateSchedule):
    """lr(t) = lr0 * cos(arccos(final_fraction) * min(t / T, 1)), AdaMatch's cosine decay.

    Decays from `initial` to `final_fraction * initial` at `total_steps` (0.25 in AdaMatch's
    official code; final_fraction 0 gives a plain quarter-cosine to zero).
    """

    def __init__(self, initial: float, total_steps: int, final_fraction: float = 0.25):
        self.initial = float(initial)
        self.total_steps = int(total_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        progress = tf.minimum(tf.cast(step, tf.float32) / float(max(self.total_steps, 1)), 1.0)
        return self.initial * tf.cos(math.acos(self.final_fraction) * progress)

    def get_config(self):
        return {"initial": self.initial, "total_steps": self.total_steps,
                "final_fraction": self.final_fraction}


@keras.saving.register_keras_serializable(package="tfuda")
class AnnealedLR(keras.optimizers.schedules.LearningRateSchedule):
    """lr(t) = lr0 / (1 + 10 p)^0.75 with p = min(t / T, 1): DANN's annealing (Ganin & Lempitsky)."""

    def __init__(self, initial: float, total_steps: int):
        self.initial = float(initial)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        progress = tf.minimum(tf.cast(step, tf.float32) / float(max(self.total_steps, 1)), 1.0)
        return self.initial / tf.pow(1.0 + 10.0 * progress, 0.75)

    def get_config(self):
        return {"initial": self.initial, "total_steps": self.total_steps}
