"""The target's class prior, estimated online during training: one stochastic EM step a batch
(Saerens et al. 2002, the estimator of `tfuda.validate.prior`), for AdaMatch's label-shift-aware
distribution alignment (`--method-arg alignment=prior`).

Per step, with the source batch's mean prediction m_x `[K]` and the target batch's predictions
p `[U, K]`:

    s  <- d s  + (1 - d) m_x                          (the source prior as the model predicts it)
    q_i = normalize(p_i * pi / s)                     (E-step: posteriors under the prior pi)
    pi <- d pi + (1 - d) mean_i q_i                   (M-step, averaged over batches)

With d = 0 and the same p every step this is the batch EM of `tfuda.validate.prior.estimate_prior`.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class TargetPrior(keras.layers.Layer):
    """Running EM estimate of the target class prior.

    Args:
      num_classes: K.
      decay: d, the weight of the past in both running means (0.99: about 100 steps).

    Non-trainable float32 weights `source_prior`, `target_prior` `[K]`, starting uniform,
    checkpointed with the run; under a distribution strategy each replica's update is averaged.
    """

    def __init__(self, num_classes: int, decay: float = 0.99, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.num_classes, self.decay = num_classes, decay
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.source_prior = self.add_weight(shape=(num_classes,), initializer=uniform, trainable=False,
                                            aggregation="mean", name="source_prior")
        self.target_prior = self.add_weight(shape=(num_classes,), initializer=uniform, trainable=False,
                                            aggregation="mean", name="target_prior")

    def update(self, source_batch_mean: tf.Tensor, p_target: tf.Tensor, eps: float = 1e-6) -> tf.Tensor:
        """One EM step from a source batch mean `[K]` and target predictions `[U, K]`; returns the
        updated target prior `[K]`."""
        source = self.decay * self.source_prior + (1.0 - self.decay) * source_batch_mean
        weighted = p_target * (self.target_prior + eps) / (source + eps)
        weighted /= tf.reduce_sum(weighted, axis=1, keepdims=True)
        prior = self.decay * self.target_prior + (1.0 - self.decay) * tf.reduce_mean(weighted, 0)
        self.source_prior.assign(source)
        self.target_prior.assign(prior)
        return prior

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "decay": self.decay}
