"""Batch nuclear-norm maximisation (Cui et al., CVPR 2020) as a validator."""

from __future__ import annotations

import numpy as np


def bnm(probs: np.ndarray, **_) -> float:
    """||P||_* / N, the nuclear norm (sum of singular values) of the prediction matrix `[N, K]`
    over N: large when predictions are both confident and spread over many classes."""
    probs = np.asarray(probs, np.float64)
    return float(np.linalg.svd(probs, compute_uv=False).sum() / len(probs))
