"""Information maximisation: confident *and* diverse target predictions score higher."""

from __future__ import annotations

import numpy as np

from tfuda.validate.entropy import entropies


def information_maximisation(probs: np.ndarray, **_) -> float:
    """H(mean_i p_i) - mean_i H(p_i). probs: float `[N, K]`.

    In [0, log K]: entropy is concave, so the entropy of the mean prediction is at least the
    mean entropy. log K for confident predictions spread evenly over the K classes; 0 for a
    model that predicts one class for every image, and for one that is unsure everywhere.
    """
    probs = np.asarray(probs, np.float64)
    return float(entropies(probs.mean(axis=0, keepdims=True))[0] - np.mean(entropies(probs)))
