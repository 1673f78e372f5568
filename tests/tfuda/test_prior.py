"""The estimated target prior (EM, Saerens et al. 2002), and the alarm and class_balance under label shift."""

import json

import numpy as np
import pytest

from tfuda.validate.prior import estimate_prior
from tfuda.validate.sample import TargetValidation


def calibrated_posteriors(labels: np.ndarray, classes: int, seed: int = 0, scale: float = 1.5) -> np.ndarray:
    """Exact Bayes posteriors under a uniform class prior for 1-D Gaussian classes at 0, 1, ..., K-1."""
    rng = np.random.default_rng(seed)
    x = labels + rng.normal(0.0, 1.0 / scale, len(labels))
    logits = -0.5 * (scale * (x[:, None] - np.arange(classes)[None])) ** 2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def test_em_recovers_a_shifted_prior_from_calibrated_posteriors():
    target = np.array([0.6, 0.25, 0.1, 0.05])
    labels = np.random.default_rng(1).choice(4, 20_000, p=target)
    probs = calibrated_posteriors(labels, 4)
    naive = probs.mean(axis=0)  # the mean posterior is pulled toward the source's uniform prior
    estimate = estimate_prior(probs)
    assert np.abs(estimate - target).max() < 0.02 < np.abs(naive - target).max()
    assert estimate.sum() == pytest.approx(1.0)
    # no shift: stays at the source prior
    same = calibrated_posteriors(np.random.default_rng(2).choice(4, 20_000), 4)
    assert np.abs(estimate_prior(same) - 0.25).max() < 0.02


def digits_m_lt_labels() -> np.ndarray:
    from pipelines import builtin

    return builtin.load("digits-m-lt", "train")[1]


class Fixed:
    """A target sample whose `outputs(model)` are the probabilities given as the model."""

    def outputs(self, probs):
        return probs, np.zeros((len(probs), 2))


def test_a_correct_model_on_the_long_tailed_target_raises_no_alarm_and_scores_best():
    labels = digits_m_lt_labels()  # digits-m-lt: the largest class 25%, the smallest 2.4%
    names = [str(k) for k in range(10)]
    start = calibrated_posteriors(labels, 10, scale=2.0)  # a source-trained model, unsure near class borders
    correct = np.eye(10)[labels] * 0.9 + 0.01
    as_source = np.eye(10)[np.random.default_rng(0).permutation(np.arange(len(labels)) % 10)] * 0.9 + 0.01
    collapsed = np.eye(10)[np.where(np.arange(len(labels)) % 10 < 6, 7, labels)] * 0.9 + 0.01  # 60% onto '7'

    check = TargetValidation(Fixed(), None, names, from_model=True)
    check(start)  # the model the run starts from: its estimate is the reference
    assert np.abs(check.reference - np.bincount(labels) / len(labels)).max() < 0.05
    scores, alarm, _ = check(correct)
    assert alarm is None
    assert scores["class_balance"] > check(as_source)[0]["class_balance"]
    assert check(collapsed)[1] is not None and "'7'" in check(collapsed)[1]


def test_a_steeper_tail_raises_no_false_alarm_once_the_prior_is_estimated():
    target = np.array([0.45, 0.2, 0.1, 0.07, 0.05, 0.04, 0.03, 0.03, 0.02, 0.01])  # 45x
    labels = np.random.default_rng(3).choice(10, 1000, p=target)
    correct = np.eye(10)[labels] * 0.9 + 0.01
    names = [str(k) for k in range(10)]
    check = TargetValidation(Fixed(), None, names, from_model=True)
    assert check(calibrated_posteriors(labels, 10, scale=1.2))[1] is not None  # vs the source prior: 4.5x
    assert check(correct)[1] is None  # vs the estimated target prior
    # a run from scratch keeps the source shares: its first evaluation is no source-trained model
    scratch = TargetValidation(Fixed(), None, names)
    scratch(calibrated_posteriors(labels, 10, scale=1.2))
    assert scratch.reference is None and scratch(correct)[1] is not None


def test_every_run_records_the_estimated_prior(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    prior = metrics["estimated_target_prior"]
    assert len(prior) == 10 and sum(prior) == pytest.approx(1.0, abs=1e-4)
    assert all(len(e["estimated_target_prior"]) == 10 for e in metrics["eval_history"])
    assert metrics["eval_history"][-1]["estimated_target_prior"] == prior


def test_a_resumed_run_takes_its_reference_from_its_recorded_start():
    names = [str(k) for k in range(4)]
    recorded = [{"step": 0, "estimated_target_prior": [0.7, 0.1, 0.1, 0.1]}, {"step": 500}]
    check = TargetValidation(Fixed(), None, names, from_model=True)
    check.resume(recorded)
    assert check.reference.tolist() == [0.7, 0.1, 0.1, 0.1] and not check.from_model
    piled = np.eye(4)[[0] * 7 + [1, 2, 3]] * 0.9 + 0.025  # '0' 70%: as its reference share, 7x its source share
    assert check(piled)[1] is None
    scratch = TargetValidation(Fixed(), None, names)
    scratch.resume([{"step": 500, "estimated_target_prior": [0.7, 0.1, 0.1, 0.1]}])  # no start entry
    assert scratch.reference is None and scratch(piled)[1] is not None
