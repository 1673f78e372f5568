"""A label-free estimate of a model's accuracy on the target: calibrated confidence optimal transport.

COT (Lu et al., "Characterizing Out-of-Distribution Error via Optimal Transport", NeurIPS 2023)
estimates the error as the cost of moving the model's predicted distributions on the target
`[N, K]` onto one-hot labels drawn with the target's class proportions pi `[K]`, at cost
1 - p_y per image (half the L1 distance from p to the one-hot vector of y):

    est. accuracy = 1 - min_gamma sum_ik gamma_ik (1 - p_ik),
                    gamma >= 0, sum_k gamma_ik = 1/N, sum_i gamma_ik = pi_k

It is the mean confidence when the predicted classes already have the proportions pi, and lower
when the predictions pile onto some classes, which is how a confident model fails under a shift.
Two things make it work here (docs/benchmarks.md, *Estimating target accuracy*):

- **Calibration.** The probabilities are first rescaled by the temperature (Guo et al., ICML 2017)
  that fits strongly augmented held-out *labeled source* images best: there the model errs as it
  does on a shifted domain, while on clean source images it is often always right.
- **The class proportions.** COT needs the target's; with the true ones it came within 2.5 points
  on average (6.7 at most) of the true accuracy on 26 runs. Without labels: the source's
  proportions moved toward the model's own EM estimate only as far as its error requires, since a
  model right on a fraction a of the target predicts class shares within L1 2(1 - a) of the true
  ones (`plausible_prior`). A confident model adapted to a long-tailed target keeps its estimate;
  an unsure one whose predictions pile onto some classes is held to the source's proportions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
"""Temperatures searched (log-spaced) by `fit_temperature`."""


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / temperature), float64 `[N, K]`: `probs` `[N, K]` at another temperature."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of `TEMPERATURES` minimising the negative log-likelihood of `labels` `[N]`
    (int) under `probs` `[N, K]` rescaled by it."""
    log_probs = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None))
    rows = np.arange(len(labels))
    best, best_nll = 1.0, np.inf
    for temperature in TEMPERATURES:
        logits = log_probs / temperature
        logits -= logits.max(axis=1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[rows, labels]))
        if nll < best_nll:
            best, best_nll = float(temperature), nll
    return best


def cot(probs: np.ndarray, prior: np.ndarray) -> float:
    """1 - the optimal transport cost of `probs` `[N, K]` onto labels with proportions `prior`
    `[K]` (normalised here), in [0, 1] (the module's formula; a linear program)."""
    from scipy import sparse
    from scipy.optimize import linprog

    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    per_image = sparse.kron(sparse.eye(n), np.ones((1, k)))
    per_class = sparse.kron(np.ones((1, n)), sparse.eye(k))
    shares = np.asarray(prior, np.float64) / np.sum(prior)
    shares = np.where(shares < 1e-6, 0.0, shares)  # shares like 1e-8 or 1e-124 (EM on a near-collapsed model) make
    shares /= shares.sum()                          # HiGHS call the problem infeasible
    plan = linprog((1.0 - probs).ravel(), A_eq=sparse.vstack([per_image, per_class]).tocsr(),
                   b_eq=np.concatenate([np.full(n, 1.0 / n), shares]), bounds=(0, None), method="highs")
    if not plan.success:  # cannot happen for a valid prior: every plan with these margins is feasible
        raise ValueError(f"COT: the transport problem failed ({plan.message})")
    return float(np.clip(1.0 - plan.fun, 0.0, 1.0))


def sampling_spread(prior: np.ndarray, *counts: float) -> float:
    """The L1 distance by which estimates of the class shares `prior` `[K]` drawn from samples of
    `counts` images each typically differ by sampling alone: one standard error per class,
    summed, sum_k sqrt(pi_k (1 - pi_k) sum_j 1 / n_j) (the expected distance is about 0.8x this).
    With no counts, 0."""
    shares = np.asarray(prior, np.float64) / np.sum(prior)
    return float(np.sqrt(shares * (1.0 - shares)).sum() * np.sqrt(sum(1.0 / n for n in counts)))


def prior_distance(prior: np.ndarray, other: np.ndarray) -> float:
    """The L1 distance between two class-proportion vectors `[K]`, each normalised to sum 1
    (float64)."""
    return float(np.abs(np.asarray(prior, np.float64) / np.sum(prior)
                        - np.asarray(other, np.float64) / np.sum(other)).sum())


def toward_source(probs: np.ndarray, estimated_prior: np.ndarray, source_prior: np.ndarray,
                  spread: float = 0.0) -> float:
    """How far `estimated_prior` may move toward `source_prior`, t in [0, 1], as the model's own
    error (and the sampling of the estimates) allows: a model right on a fraction a of the target
    predicts class shares within L1 2 (1 - a) of the true ones, so with a the COT accuracy under
    the estimate (the confidence, as the predictions already have those shares)
    t = min(1, (2 (1 - a) + spread) / ||source - estimated||_1). t < 1 means the estimate is
    farther from the source's proportions than the model's errors and sampling can explain:
    evidence that the target's proportions differ.

    Args:
      probs: target probabilities `[N, K]`.
      estimated_prior: the EM estimate of the target's class proportions `[K]`
        (`tfuda.validate.prior`).
      source_prior: the labeled source's class proportions `[K]`.
      spread: the L1 distance sampling alone puts between the two priors (`sampling_spread`;
        0: both exact).
    """
    estimated = np.asarray(estimated_prior, np.float64) / np.sum(estimated_prior)
    distance = prior_distance(estimated, source_prior)
    reach = 2.0 * (1.0 - cot(probs, estimated)) + spread
    return min(1.0, reach / distance) if distance > 0 else 1.0


def plausible_prior(probs: np.ndarray, estimated_prior: np.ndarray,
                    source_prior: np.ndarray) -> tuple[float, np.ndarray]:
    """`(COT accuracy, prior [K])`: `estimated_prior` moved toward `source_prior` by as much as the
    model's own error allows (`toward_source`): the source's proportions when they are within
    reach, else the point toward them at that distance.

    Args:
      probs: calibrated target probabilities `[N, K]`.
      estimated_prior, source_prior: as in `toward_source`.
    """
    estimated = np.asarray(estimated_prior, np.float64) / np.sum(estimated_prior)
    source = np.asarray(source_prior, np.float64) / np.sum(source_prior)
    prior = estimated + toward_source(probs, estimated, source) * (source - estimated)
    return cot(probs, prior), prior


MAX_ERROR_MEASURED = 0.20
"""The largest error of the estimate runs record (`est_accuracy`) on the benchmark's runs whose
model raised no collapse alarm (39 of 46; docs/benchmarks.md, *Estimating target accuracy*): a measured bound on those shifts,
not a guarantee on others."""
MAX_ERROR_MEASURED_ALARMED = 0.44
"""The same on the runs whose model raised the collapse alarm (7 of 46): predictions piled onto a few
classes can look like a target with those proportions."""


@dataclasses.dataclass(frozen=True)
class AccuracyEstimate:
    """A model's estimated target accuracy and what it rests on."""

    value: float
    temperature: float
    """The calibrating temperature (> 1: the model was over-confident on the augmented source)."""
    prior: list[float]
    """The class proportions the transport used."""


def described_estimate(value: float | None, alarmed: bool) -> dict | None:
    """`metrics.json`'s `estimated_target_accuracy` for an estimate `value` (None: no estimate) of
    a run that raised the collapse alarm (`alarmed`) or not: the largest error measured on such runs."""
    if value is None:
        return None
    return {"value": round(float(value), 4), "method": "cot, calibrated on augmented held-out source",
            "max_error_measured": MAX_ERROR_MEASURED_ALARMED if alarmed else MAX_ERROR_MEASURED}


def estimate_accuracy(target_probs: np.ndarray, source_probs: np.ndarray, source_labels: np.ndarray,
                      estimated_prior: np.ndarray, source_prior: np.ndarray) -> AccuracyEstimate:
    """The target accuracy of a model estimated from its outputs, without target labels.

    Args:
      target_probs: probabilities on the unlabeled target sample `[N, K]`.
      source_probs, source_labels: probabilities `[M, K]` on strongly augmented held-out labeled
        source images and their labels `[M]` (int): the calibration set.
      estimated_prior: the EM estimate of the target's class proportions `[K]`.
      source_prior: the labeled source's class proportions `[K]`.
    """
    temperature = fit_temperature(source_probs, np.asarray(source_labels))
    value, prior = plausible_prior(scale(target_probs, temperature), estimated_prior, source_prior)
    return AccuracyEstimate(value, temperature, [float(p) for p in prior])
