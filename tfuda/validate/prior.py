"""The target's class proportions, estimated without target labels (Saerens, Latinne and Decaestecker,
"Adjusting the Outputs of a Classifier to New a Priori Probabilities: A Simple Procedure",
Neural Computation 2002).

Under label shift (p(x|y) shared, p(y) not), a classifier's posteriors p_s(y|x) for the source
prior pi_s become the target's by re-weighting each class by pi_t(y) / pi_s(y). EM finds the
pi_t that is the mean of its own re-weighted posteriors over the unlabeled target:

    w_k = pi_t(k) / pi_s(k),    q_ik = p_ik w_k / sum_j p_ij w_j,    pi_t(k) <- mean_i q_ik.

It is exact for calibrated source posteriors; an over-confident model pulls the estimate toward
its own predicted proportions. The estimate of a model trained on the source (the model a
source-free run starts from) is the one to trust; a model adapted on the target has learned its
predictions from the target and its estimate can follow its own mistakes (see `alarm`).
"""

from __future__ import annotations

import numpy as np

ITERATIONS = 1000
TOLERANCE = 1e-8


def estimate_prior(probs: np.ndarray, source_prior: np.ndarray | None = None) -> np.ndarray:
    """EM estimate of the target class prior.

    Args:
      probs: float `[N, K]` posteriors on unlabeled target images.
      source_prior: `[K]` class proportions the posteriors were trained under (uniform when None).

    Returns:
      float64 `[K]`, summing to 1.
    """
    probs = np.asarray(probs, np.float64)
    classes = probs.shape[1]
    source = np.full(classes, 1.0 / classes) if source_prior is None else np.asarray(source_prior, np.float64)
    source = np.clip(source / source.sum(), 1e-12, None)
    prior = source.copy()
    for _ in range(ITERATIONS):
        weighted = probs * (prior / source)
        weighted /= np.clip(weighted.sum(axis=1, keepdims=True), 1e-300, None)
        updated = weighted.mean(axis=0)
        if np.abs(updated - prior).max() < TOLERANCE:
            return updated
        prior = updated
    return prior
