"""Information maximisation: confident *and* diverse target predictions score higher."""

from __future__ import annotations

import numpy as np

from tfuda.validate.entropy import entropies


def information_maximisation(probs: np.ndarray, **_) -> float:
    """H(mean_i p_i) - mean_i H(p_i). probs: float `[N, K]`. In [-log K, log K]; a model that
    predicts one class for every image scores <= 0."""
    probs = np.asarray(probs, np.float64)
    return float(entropies(probs.mean(axis=0, keepdims=True))[0] - entropies(probs).mean())
