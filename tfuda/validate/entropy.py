"""Prediction entropy: confident target predictions score higher."""

from __future__ import annotations

import numpy as np


def entropies(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of `probs` `[N, K]` -> `[N]`."""
    probs = np.asarray(probs, np.float64)
    return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)


def neg_entropy(probs: np.ndarray, **_) -> float:
    """-mean_i H(p_i). probs: float `[N, K]`, rows summing to 1. In [-log K, 0]."""
    return float(-entropies(probs).mean())
