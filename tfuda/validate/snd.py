"""Soft neighbourhood density (Saito et al., "Tune it the Right Way: Unsupervised Validation of
Domain Adaptation via Soft Neighborhood Density", ICCV 2021)."""

from __future__ import annotations

import numpy as np

from tfuda.validate.entropy import entropies

TEMPERATURE = 0.05
"""The paper's temperature."""


def snd(probs: np.ndarray, features: np.ndarray, temperature: float = TEMPERATURE, **_) -> float:
    """Mean entropy of each image's softmax over its cosine similarities to the other images.

    features: float `[N, D]` penultimate features of the target sample. Dense neighbourhoods
    (target images that cluster) give high entropy, hence a high score.
    """
    features = np.asarray(features, np.float64)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T / temperature
    np.fill_diagonal(similarity, -np.inf)
    similarity -= similarity.max(axis=1, keepdims=True)
    weights = np.exp(similarity)
    return float(np.mean(entropies(weights / weights.sum(axis=1, keepdims=True))))
