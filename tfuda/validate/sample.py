"""The fixed target sample validators score, and scoring a model on it."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from pipelines.augment import Augment
from pipelines.feeds import first_images
from pipelines.sources import Source
from tfuda.inference import features_fn
from tfuda.validate import ESTIMATE, VALIDATORS
from tfuda.validate.advice import start_of
from tfuda.validate.alarm import collapse_alarm
from tfuda.validate.estimate import estimate_accuracy
from tfuda.validate.prior import estimate_prior

BATCH = 256
HELD_OUT_SIZE = 500
"""Held-out source images `HeldOutSource` takes (two augmented views of each)."""


def model_outputs(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(probabilities [N, K], penultimate features [N, D])` of `model` on uint8 images
    `[N, S, S, 3]`, batched in graph mode (inference mode)."""
    infer = features_fn(model)
    features, probs = [], []
    for start in range(0, len(images), BATCH):
        embedding, probabilities = infer(images[start:start + BATCH])
        features.append(embedding.numpy())
        probs.append(probabilities.numpy())
    return np.concatenate(probs), np.concatenate(features)


class TargetSample:
    """The first `size` images of a seeded shuffle of the unlabeled target, preprocessed once.

    The same images at every evaluation of a run (and in every run with the same data and
    seed), so scores are comparable across steps and runs. Their labels are not kept.
    """

    def __init__(self, target: Source, size: int, image_size: int, seed: int):
        self.images, _ = first_images(target, size, image_size, shuffle_seed=seed)

    def outputs(self, model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
        """`(probabilities [N, K], penultimate features [N, D])` of `model` (`model_outputs`)."""
        return model_outputs(model, self.images)


def strong_views(images: np.ndarray, augment: Augment, seed: int, views: int) -> np.ndarray:
    """`views` strongly augmented copies of uint8 `images` `[N, S, S, 3]`, one after the other,
    rounded back to uint8 `[views * N, S, S, 3]`; copy v is seeded `[seed, v]`."""
    copies = [augment.strong(tf.constant(images), tf.constant([seed, view], tf.int64)) for view in range(views)]
    return np.concatenate([tf.cast(tf.clip_by_value(tf.round(c), 0, 255), tf.uint8).numpy() for c in copies])


class HeldOutSource:
    """`views` strongly augmented copies of the first `size` held-out labeled source images (a
    fixed shuffle): where a model errs as it does under a shift, the set `estimate_accuracy`
    calibrates on. `images` uint8 `[views * N, S, S, 3]`, `labels` int64 `[views * N]`.

    Args:
      source: the labeled held-out source (the run's `eval_source`).
      augment: the run's augmentation policy (its strong view is used).
      seed: the augmentation's seed (the run's `--seed`).
    """

    def __init__(self, source: Source, size: int, image_size: int, augment: Augment, seed: int, views: int = 2):
        images, labels = first_images(source, size, image_size, shuffle_seed=0)
        self.images = strong_views(images, augment, seed, views)
        self.labels = np.tile(labels, views)

    def probs(self, model: keras.Model) -> np.ndarray:
        """`model`'s probabilities on the views `[views * N, K]`."""
        return model_outputs(model, self.images)[0]


def source_prior(source: Source | None, num_classes: int) -> np.ndarray | None:
    """The labeled source's class proportions `[K]` float64 (None without source data)."""
    if source is None:
        return None
    counts = np.bincount(source.labels(), minlength=num_classes)
    return counts / counts.sum()


def score(probs: np.ndarray, features: np.ndarray, prior: np.ndarray | None = None) -> dict[str, float]:
    """Every validator of `tfuda.validate.VALIDATORS`: {name: score, higher is better}.

    Args:
      probs, features: `TargetSample.outputs` of a model.
      prior: class proportions `[K]` `class_balance` compares with (uniform when None).
    """
    return {name: fn(probs=probs, features=features, prior=prior) for name, fn in VALIDATORS.items()}


def expected_shares(source_prior: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Each class's expected share of the target predictions `[K]`: the larger of its source
    share and its `reference` share (the source share without a reference); not normalised."""
    return source_prior if reference is None else np.maximum(source_prior, np.asarray(reference, np.float64))


class TargetValidation:
    """model -> `(validator scores, collapse alarm or None, estimated target prior [K])` on the
    target sample, one call per evaluation in step order. With a `held_out` source the scores
    include `est_accuracy`, the estimated target accuracy (`tfuda.validate.estimate`).

    The target prior is estimated at every call (`tfuda.validate.prior`, EM from the source
    prior). A run from an existing model (`--init`, source-free methods) is first called on the
    model as given, a source-trained model (EM's own setting); that estimate becomes the run's
    `reference`, and each class is then *expected* to take up to the larger of its source share
    and its reference share. The collapse alarm reads these, and `class_balance` compares with
    them normalised. A run from scratch keeps the source shares: the estimate of its first
    evaluation, a model already trained on the target's pseudo-labels, was measured to make
    `class_balance` rank runs worse on a balanced target (docs/benchmarks.md).

    Args:
      sample: the target sample.
      source_prior: `[K]` source class proportions (None: uniform, e.g. a source-free run).
      class_names: for the alarm's message.
      from_model: the first call is on the model the run starts from (its estimate becomes the
        reference).
      held_out: augmented held-out labeled source images (None: no accuracy estimate).
    """

    def __init__(self, sample: TargetSample, source_prior: np.ndarray | None, class_names: list[str],
                 from_model: bool = False, held_out: HeldOutSource | None = None):
        self.sample, self.class_names, self.from_model = sample, list(class_names), from_model
        self.held_out = held_out
        classes = len(self.class_names)
        self.source_prior = np.full(classes, 1.0 / classes) if source_prior is None else np.asarray(source_prior)
        self.reference: np.ndarray | None = None

    def resume(self, history: list[dict]) -> None:
        """Continues a resumed run: its reference is the estimate recorded at its start (`start_of`)."""
        start = start_of(history)
        if start is not None and start.get("estimated_target_prior"):
            self.reference, self.from_model = np.asarray(start["estimated_target_prior"], np.float64), False

    def __call__(self, model: keras.Model) -> tuple[dict[str, float], str | None, np.ndarray]:
        probs, features = self.sample.outputs(model)
        estimate = estimate_prior(probs, self.source_prior)
        expected = expected_shares(self.source_prior, self.reference)
        if self.reference is None and self.from_model:
            self.reference, self.from_model = estimate, False
        scores = score(probs, features, expected / expected.sum())
        if self.held_out is not None:
            try:
                scores[ESTIMATE] = estimate_accuracy(probs, self.held_out.probs(model), self.held_out.labels,
                                                     estimate, self.source_prior).value
            except ValueError:  # the solver failed: this evaluation has no estimate; training goes on
                pass
        return scores, collapse_alarm(probs, expected, self.class_names), estimate
