"""The target's class prior for AdaMatch's label-shift-aware distribution alignment, estimated
without target labels by EM (Saerens et al. 2002, the estimator of `tfuda.validate.prior`):

- `TargetPrior` (`--method-arg alignment=prior`): online, one stochastic EM step a batch.
- `FrozenPrior` (`--method-arg realign=F`): once, from the EMA model's predictions on the
  unlabeled target sample when the last fraction F of the run begins (`EstimatePrior`), then
  frozen; the run's other steps align to the source's class proportions as usual. With
  `refine_shifted` it is estimated when the refinement stage begins, and the stage runs only if
  the estimate is `shifted`. (With `refine_align` alone it only tracks the source's mean
  prediction, never estimated.)

Per step, with the source batch's mean prediction m_x `[K]` and the target batch's predictions
p `[U, K]`:

    s  <- d s  + (1 - d) m_x                          (the source prior as the model predicts it)
    q_i = normalize(p_i * pi / s)                     (E-step: posteriors under the prior pi)
    pi <- d pi + (1 - d) mean_i q_i                   (M-step, averaged over batches)

With d = 0 and the same p every step this is the batch EM of `tfuda.validate.prior.estimate_prior`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from pipelines.feeds import first_step_at
from tfuda.validate.estimate import sampling_spread, toward_source
from tfuda.validate.prior import estimate_prior
from tfuda.validate.sample import TargetSample


class ClassPriors(keras.layers.Layer):
    """A source and a target class prior as weights: `source_prior`, `target_prior` `[K]`,
    non-trainable float32, starting uniform, checkpointed with the run; under a distribution
    strategy each replica's update is averaged.

    Args:
      num_classes: K.
      decay: weight of the past in the running means (0.99: about 100 steps).
    """

    def __init__(self, num_classes: int, decay: float = 0.99, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.num_classes, self.decay = num_classes, decay
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.source_prior = self.add_weight(shape=(num_classes,), initializer=uniform, trainable=False,
                                            aggregation="mean", name="source_prior")
        self.target_prior = self.add_weight(shape=(num_classes,), initializer=uniform, trainable=False,
                                            aggregation="mean", name="target_prior")

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "decay": self.decay}


class TargetPrior(ClassPriors):
    """Running EM estimate of the target class prior (`target_prior`) against the running mean of
    the source predictions (`source_prior`), both with decay d (`ClassPriors`' arguments)."""

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


class FrozenPrior(ClassPriors):
    """A target class prior estimated once (`target_prior`), against `source_prior`: the running
    mean of the source predictions (`track`, decay as in `ClassPriors`), the proportions the
    model's target predictions are aligned to before the estimate. Two more weights: `estimated`,
    0 before the estimate and 1 after; `shifted`, 1 when the estimate is farther from
    `source_prior` than the model's errors and the sampling of both priors explain
    (`tfuda.validate.estimate.toward_source` < 1)."""

    def __init__(self, num_classes: int, decay: float = 0.99, **kwargs):
        super().__init__(num_classes, decay, **kwargs)
        self.estimated = self.add_weight(shape=(), initializer="zeros", trainable=False, aggregation="mean",
                                         name="estimated")
        self.shifted = self.add_weight(shape=(), initializer="zeros", trainable=False, aggregation="mean",
                                       name="shifted")

    def track(self, source_batch_mean: tf.Tensor) -> None:
        """Adds a source batch's mean prediction `[K]` to `source_prior` (until the estimate)."""
        source = self.decay * self.source_prior + (1.0 - self.decay) * source_batch_mean
        self.source_prior.assign(tf.where(self.estimated > 0.5, self.source_prior, source))

    def source_images(self, batch_size: int) -> float:
        """The images `source_prior` effectively averages over when `track`ed with batches of
        `batch_size`: an EMA of decay d over batch means has the variance of a mean of
        B (1 + d) / (1 - d) images."""
        return batch_size * (1.0 + self.decay) / (1.0 - self.decay)

    def estimate(self, probs: np.ndarray, batch_size: int) -> np.ndarray:
        """Sets `target_prior` to the EM estimate from target posteriors `[N, K]` (trained under
        `source_prior`, tracked with source batches of `batch_size`), marks it estimated and
        whether it is `shifted`; returns it, float64 `[K]`."""
        source = self.source_prior.numpy()
        prior = estimate_prior(probs, source)
        self.target_prior.assign(prior.astype(np.float32))
        self.estimated.assign(1.0)
        spread = sampling_spread(prior, len(probs), self.source_images(batch_size))
        self.shifted.assign(float(toward_source(probs, prior, source, spread) < 1.0))
        return prior


class EstimatePrior(keras.callbacks.Callback):
    """Sets `prior` from the EMA model's predictions on `sample` before the first step of the
    run's last `fraction` (`first_step_at(1 - fraction, T)` of `self.model`, the `TrainingModel`),
    or before the first step of a resumed run that is past it without an estimate. `batch_size`:
    the source images a step (over all replicas) that `prior.source_prior` was tracked with."""

    def __init__(self, prior: FrozenPrior, sample: TargetSample, fraction: float, batch_size: int):
        super().__init__()
        self.prior, self.sample, self.fraction, self.batch_size = prior, sample, fraction, batch_size

    def on_train_begin(self, logs=None):
        self.start = first_step_at(1.0 - self.fraction, self.model.total_steps)

    def on_train_batch_begin(self, batch, logs=None):
        if batch >= self.start and float(self.prior.estimated.numpy()) < 0.5:
            probs, _ = self.sample.outputs(self.model.ema.average)
            self.prior.estimate(probs, self.batch_size)
