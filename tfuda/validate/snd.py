"""Soft neighbourhood density (Saito et al., "Tune it the Right Way: Unsupervised Validation of
Domain Adaptation via Soft Neighborhood Density", ICCV 2021), on the softmax outputs as in the
paper (and pytorch-adapt's `SNDValidator`), for which its temperature was chosen."""

from __future__ import annotations

import numpy as np

from tfuda.validate.entropy import entropies

TEMPERATURE = 0.05
"""The paper's temperature (for softmax outputs)."""


def snd(probs: np.ndarray, temperature: float = TEMPERATURE, **_) -> float:
    """Mean entropy of each image's softmax over its cosine similarities to the other images.

    probs: float `[N, K]` softmax outputs on the target sample, L2-normalised before the
    similarities. Target images whose predictions have dense soft neighbourhoods (clusters of
    similar predictions) give high entropy, hence a high score.
    """
    probs = np.asarray(probs, np.float64)
    unit = probs / np.maximum(np.linalg.norm(probs, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T / temperature
    np.fill_diagonal(similarity, -np.inf)
    similarity -= similarity.max(axis=1, keepdims=True)
    weights = np.exp(similarity)
    return float(np.mean(entropies(weights / weights.sum(axis=1, keepdims=True))))
