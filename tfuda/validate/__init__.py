"""Label-free validators: how good is an adapted model on the target, without target labels?

Each validator is a pure function of model outputs on a fixed sample of *unlabeled* target
images — probabilities `[N, K]` and penultimate features `[N, D]` — (and of the source's class
prior, or held-out source accuracy) returning one score where **higher is better**. Target
labels are never an input. The run computes every validator at every evaluation
(`tfuda.engine.loop.PeriodicEvaluation`) and logs them as `validators/<name>` (TensorBoard,
`metrics.json`, the progress output). Musgrave et al., "Three New Validators and a Large-Scale
Benchmark Ranking for Unsupervised Domain Adaptation" (2022) compare how well each ranks runs.
"""

from __future__ import annotations

from typing import Callable

from tfuda.validate.balance import class_balance
from tfuda.validate.bnm import bnm
from tfuda.validate.entropy import neg_entropy
from tfuda.validate.im import information_maximisation
from tfuda.validate.snd import snd

Validator = Callable[..., float]

VALIDATORS: dict[str, Validator] = {
    "entropy": neg_entropy,
    "im": information_maximisation,
    "bnm": bnm,
    "snd": snd,
    "class_balance": class_balance,
}
"""Target-output validators by name; `source_accuracy` (held-out source accuracy) is logged beside them."""

ESTIMATE = "est_accuracy"
"""The estimated target accuracy (`tfuda.validate.estimate`), logged beside the validators when
the run has held-out labeled source images."""

SCORES: tuple[str, ...] = (*VALIDATORS, "source_accuracy", ESTIMATE)
"""Every score a run logs under `validators/`: what `--select` and the sweep's `rank_by` may name."""
