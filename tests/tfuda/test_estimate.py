"""The label-free estimate of target accuracy: calibration, confidence optimal transport, the prior it uses."""

import numpy as np
import pytest

from tfuda.validate.estimate import (MAX_ERROR_MEASURED, MAX_ERROR_MEASURED_ALARMED, cot, described_estimate,
                                    estimate_accuracy, fit_temperature, plausible_prior, sampling_spread, scale,
                                    toward_source)


def confident(classes: np.ndarray, k: int, p: float) -> np.ndarray:
    """`[N, K]` predictions: probability p on each image's class of `classes`, the rest spread evenly."""
    probs = np.full((len(classes), k), (1 - p) / (k - 1))
    probs[np.arange(len(classes)), classes] = p
    return probs


def test_cot_is_the_mean_confidence_when_the_predictions_match_the_prior_and_less_when_they_pile_up():
    all_zero = confident(np.zeros(10, int), 2, 0.9)
    assert cot(all_zero, np.array([1.0, 0.0])) == pytest.approx(0.9)
    # Half the images must be labelled 1: each of them costs 1 - 0.1.
    assert cot(all_zero, np.array([0.5, 0.5])) == pytest.approx(0.5)
    balanced = confident(np.arange(10) % 2, 2, 0.9)
    assert cot(balanced, np.array([1, 1])) == pytest.approx(0.9)  # the prior is normalised
    # EM on an untrained model (near-uniform predictions) gave shares like 1e-8 and 1e-124, which
    # the solver called infeasible (a two-replica run at step 3)
    near_uniform = np.random.default_rng(0).uniform(0.092, 0.108, size=(1000, 10))
    near_uniform /= near_uniform.sum(axis=1, keepdims=True)
    prior = np.array([1.0, 1.9e-8, 3.6e-124, 2.3e-62, 6.8e-97, 5e-58, 1.3e-143, 1e-106, 7.8e-16, 8.4e-8])
    assert cot(near_uniform, prior) == pytest.approx(near_uniform[:, 0].mean(), abs=1e-6)


def test_the_fitted_temperature_undoes_a_known_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3
    true = np.exp(logits / 2.0)
    true /= true.sum(axis=1, keepdims=True)  # the labels follow the logits at temperature 2 ...
    labels = np.array([rng.choice(5, p=row) for row in true])
    over_confident = scale(true, 0.5)  # ... and the model reports them at temperature 1
    assert fit_temperature(over_confident, labels) == pytest.approx(2.0, rel=0.15)
    assert np.allclose(scale(over_confident, 2.0), true)


def test_the_plausible_prior_keeps_the_source_unless_the_estimate_demands_otherwise():
    source = np.full(4, 0.25)
    long_tail = np.array([0.7, 0.2, 0.07, 0.03])
    rng = np.random.default_rng(1)
    # An accurate, confident model on a long-tailed target: its estimate stands, moved toward the
    # source by 2 (1 - 0.97) only, which costs at most that much accuracy.
    classes = rng.choice(4, size=400, p=long_tail)
    accuracy, prior = plausible_prior(confident(classes, 4, 0.97), np.bincount(classes) / 400, source)
    assert np.abs(prior - np.bincount(classes) / 400).sum() == pytest.approx(0.06)
    assert 0.97 - 0.06 <= accuracy < 0.97
    # The same skewed predictions, unsure of themselves (a model that is often wrong): the source's prior.
    accuracy, prior = plausible_prior(confident(classes, 4, 0.4), np.bincount(classes) / 400, source)
    assert np.allclose(prior, source) and accuracy < 0.4
    # Predictions with the source's proportions: nothing to move.
    balanced = np.arange(400) % 4
    accuracy, prior = plausible_prior(confident(balanced, 4, 0.8), np.full(4, 0.25), source)
    assert np.allclose(prior, source) and accuracy == pytest.approx(0.8)


def test_the_sampling_spread_is_the_l1_distance_two_samples_of_one_prior_are_apart():
    rng = np.random.default_rng(3)
    prior = np.array([0.4, 0.3, 0.2, 0.07, 0.03])
    a, b = rng.multinomial(500, prior, size=4000) / 500, rng.multinomial(2000, prior, size=4000) / 2000
    distances = np.abs(a - b).sum(axis=1)
    # One standard error per class, summed: the mean distance is sqrt(2 / pi) ~ 0.8 of it.
    assert distances.mean() == pytest.approx(np.sqrt(2 / np.pi) * sampling_spread(prior, 500, 2000), rel=0.05)
    assert sampling_spread(prior) == 0.0 and sampling_spread(prior, 500) > sampling_spread(prior, 5000)
    # An estimate that far from the source's prior is no shift once the spread is allowed for.
    moved = prior + np.array([0.02, -0.02, 0.01, -0.01, 0.0])
    sure = confident(np.repeat(np.arange(5), np.round(moved * 500).astype(int)), 5, 0.999)  # shares: `moved`
    assert toward_source(sure, moved, prior) < 1.0 <= toward_source(sure, moved, prior, sampling_spread(prior, 500))


def test_the_error_bar_is_the_one_measured_on_runs_with_the_same_alarm_state():
    assert described_estimate(None, alarmed=False) is None
    calm, alarmed = described_estimate(0.91234, alarmed=False), described_estimate(0.91234, alarmed=True)
    assert calm["value"] == 0.9123 and calm["max_error_measured"] == MAX_ERROR_MEASURED
    assert alarmed["max_error_measured"] == MAX_ERROR_MEASURED_ALARMED > MAX_ERROR_MEASURED


def test_estimate_accuracy_calibrates_on_the_source_before_transporting():
    rng = np.random.default_rng(2)
    # On the augmented source the model is 99% confident and right 60% of the time: over-confident.
    labels = rng.integers(0, 3, size=600)
    predicted = np.where(rng.random(600) < 0.6, labels, (labels + 1) % 3)
    source_probs = confident(predicted, 3, 0.99)
    target_probs = confident(rng.integers(0, 3, size=300), 3, 0.99)
    estimate = estimate_accuracy(target_probs, source_probs, labels, np.full(3, 1 / 3), np.full(3, 1 / 3))
    assert estimate.temperature > 2.0  # softened ...
    assert 0.45 < estimate.value < 0.75  # ... so a 99%-confident target is not estimated at 0.99


def test_an_estimate_the_solver_cannot_make_leaves_the_evaluation_without_one(monkeypatch):
    from types import SimpleNamespace

    from tfuda.validate import sample

    probs = confident(np.arange(40) % 4, 4, 0.9)
    target = SimpleNamespace(outputs=lambda model: (probs, probs))
    held_out = SimpleNamespace(probs=lambda model: probs, labels=np.arange(40) % 4)
    validation = sample.TargetValidation(target, np.full(4, 0.25), list("abcd"), held_out=held_out)
    assert 0.0 <= validation(None)[0]["est_accuracy"] <= 1.0

    def fails(*args, **kwargs):
        raise ValueError("COT: the transport problem failed")

    monkeypatch.setattr(sample, "estimate_accuracy", fails)
    scores, _, prior = validation(None)
    assert "est_accuracy" not in scores and "bnm" in scores and len(prior) == 4
