"""The fixed target sample validators score, and scoring a model on it."""

from __future__ import annotations

import keras
import numpy as np

from pipelines.feeds import first_images
from pipelines.sources import Source
from tfuda.inference import features_fn
from tfuda.validate import VALIDATORS

BATCH = 256


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
      prior: source class proportions `[K]` for `class_balance` (uniform when None).
    """
    return {name: fn(probs=probs, features=features, prior=prior) for name, fn in VALIDATORS.items()}
