"""Class balance: target predictions whose class proportions match the source's score higher."""

from __future__ import annotations

import numpy as np


def class_balance(probs: np.ndarray, prior: np.ndarray | None = None, **_) -> float:
    """-KL(mean_i p_i || prior). probs: `[N, K]`; prior: `[K]` source class proportions
    (uniform when None). 0 when the mean prediction equals the prior, lower otherwise."""
    mean = np.asarray(probs, np.float64).mean(axis=0)
    prior = np.full(len(mean), 1.0 / len(mean)) if prior is None else np.asarray(prior, np.float64)
    mean, prior = np.clip(mean, 1e-12, None), np.clip(prior / prior.sum(), 1e-12, None)
    return float(-(mean * np.log(mean / prior)).sum())
