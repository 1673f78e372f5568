"""Label-free validators on hand-computed values, and in every run's metrics."""

import json
import math

import numpy as np
import pytest

from tfuda.validate import VALIDATORS
from tfuda.validate.balance import class_balance
from tfuda.validate.bnm import bnm
from tfuda.validate.alarm import model_alarmed
from tfuda.validate.entropy import neg_entropy
from tfuda.validate.estimate import MAX_ERROR_MEASURED, MAX_ERROR_MEASURED_ALARMED
from tfuda.validate.im import information_maximisation
from tfuda.validate.snd import snd

CONFIDENT_DIVERSE = np.array([[1.0, 0.0], [0.0, 1.0]])
UNSURE = np.array([[0.5, 0.5], [0.5, 0.5]])
COLLAPSED = np.array([[1.0, 0.0], [1.0, 0.0]])


def test_entropy_and_information_maximisation_by_hand():
    assert neg_entropy(CONFIDENT_DIVERSE) == pytest.approx(0.0, abs=1e-9)
    assert neg_entropy(UNSURE) == pytest.approx(-math.log(2))
    assert information_maximisation(CONFIDENT_DIVERSE) == pytest.approx(math.log(2))  # H(mean) - 0
    assert information_maximisation(UNSURE) == pytest.approx(0.0, abs=1e-9)  # log 2 - log 2
    assert information_maximisation(COLLAPSED) == pytest.approx(0.0, abs=1e-9)  # confident, one class
    assert neg_entropy(COLLAPSED) == pytest.approx(0.0, abs=1e-9)  # entropy alone cannot see collapse


def test_bnm_by_hand():
    assert bnm(CONFIDENT_DIVERSE) == pytest.approx(1.0)  # singular values 1, 1; / N = 2
    assert bnm(COLLAPSED) == pytest.approx(math.sqrt(2) / 2)  # rank 1: one singular value sqrt 2
    assert bnm(UNSURE) == pytest.approx(0.5)  # rank 1: singular value 1


def test_class_balance_by_hand():
    assert class_balance(CONFIDENT_DIVERSE) == pytest.approx(0.0, abs=1e-9)
    # mean (1, 0) against a uniform prior: -KL = -(1 * log(1 / 0.5)) = -log 2
    assert class_balance(COLLAPSED) == pytest.approx(-math.log(2), abs=1e-6)
    assert class_balance(COLLAPSED, prior=np.array([0.9, 0.1])) == pytest.approx(math.log(0.9), abs=1e-6)


def test_snd_by_hand_on_the_softmax_outputs():
    # Three images: two identical predictions, one orthogonal. Image 0's neighbours: image 1
    # (cos 1) and image 2 (cos 0); softmax over (1/T, 0) with T = 0.5 -> entropy of (e^2, 1)/(e^2 + 1).
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = np.array([math.e**2, 1.0]) / (math.e**2 + 1)
    h01 = -(p * np.log(p)).sum()
    expected = (h01 + h01 + math.log(2)) / 3  # image 2 sees both at cos 0: uniform over two
    # The features say the opposite (all three alike): SND reads the probabilities, as Saito et al.
    features = np.ones((3, 4))
    assert snd(probs, features=features, temperature=0.5) == pytest.approx(expected, rel=1e-6)
    assert snd(probs=probs, features=-features, temperature=0.5) == pytest.approx(expected, rel=1e-6)


def test_every_run_reports_validators_at_each_evaluation(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert set(metrics["validators"]) == {*VALIDATORS, "source_accuracy", "est_accuracy"}
    for entry in metrics["eval_history"]:
        assert {f"validators/{name}" for name in (*VALIDATORS, "est_accuracy")} <= set(entry)
    estimate = metrics["estimated_target_accuracy"]
    assert estimate["value"] == pytest.approx(metrics["validators"]["est_accuracy"], abs=1e-4)
    assert 0.0 <= estimate["value"] <= 1.0 and estimate["method"].startswith("cot")
    # the error bar measured on runs like this one: with or without a collapse alarm
    expected_bar = MAX_ERROR_MEASURED_ALARMED if model_alarmed(metrics) else MAX_ERROR_MEASURED
    assert estimate["max_error_measured"] == expected_bar
    last = metrics["eval_history"][-1]
    assert metrics["validators"]["im"] == pytest.approx(last["validators/im"])
    assert metrics["validators"]["source_accuracy"] == pytest.approx(metrics["source_accuracy"])


def test_validation_sample_larger_than_the_target_is_refused(tmp_path, capsys):
    from tfuda.train import main

    assert main(["--steps", "1", "--batch-size", "4", "--validation-size", "100000", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--validation-size 100000 is larger than the target 'digits-m'" in err and "Traceback" not in err


def test_concentration_and_the_alarm_by_hand():
    from tfuda.validate.alarm import MAX_SHARE_RATIO, MIN_SPREAD, collapse_alarm, concentration

    spread_out = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    spread, ratio, crowded = concentration(spread_out)
    assert spread == pytest.approx(1.0) and ratio == pytest.approx(1.0) and crowded == []
    assert collapse_alarm(spread_out, None, list("abcd")) is None
    piled = np.eye(4)[[2] * 7 + [0]]  # class 'c' takes 7/8 against a 1/4 share: 3.5x
    spread, ratio, crowded = concentration(piled)
    assert ratio == pytest.approx(3.5) and crowded == []  # below the share alarm ...
    mean = np.array([1 / 8, 0, 7 / 8, 0])
    expected = -(mean[mean > 0] * np.log(mean[mean > 0])).sum() / math.log(4)
    assert spread == pytest.approx(expected) and spread < MIN_SPREAD  # ... but far too concentrated
    message = collapse_alarm(piled, None, list("abcd"))
    assert "'c' 88%" in message
    # Against a prior where 'c' is rare, its share is MAX_SHARE_RATIO-times too high by itself.
    _, ratio, crowded = concentration(piled, np.array([0.3, 0.3, 0.1, 0.3]))
    assert ratio > MAX_SHARE_RATIO and crowded == [2]


@pytest.mark.parametrize("on_collapse", ["warn", "stop"])
def test_the_collapse_alarm_warns_or_stops(tmp_path, capsys, monkeypatch, on_collapse):
    import tensorflow as tf

    from tfuda.validate import sample as sample_module
    from tfuda.train import main

    monkeypatch.setattr(sample_module, "collapse_alarm", lambda probs, prior, names: f"onto '{names[3]}' (forced)")
    out = tmp_path / "run"
    status = main(["--steps", "4", "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2",
                   "--no-report", "--on-collapse", on_collapse, "--out", str(out)])
    captured = capsys.readouterr()
    assert "warning: collapse alarm at step 2: onto '3' (forced)" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["alarms"][0] == {"step": 2, "message": "onto '3' (forced)"}
    if on_collapse == "warn":
        assert status == 0 and metrics["status"] == "completed" and len(metrics["alarms"]) == 2
    else:
        assert status == 1 and metrics["status"] == "collapsed" and "--on-collapse stop" in captured.err
        assert tf.train.latest_checkpoint(str(out / "checkpoints")) is None  # step 2 was never saved
        assert not (out / "model.keras").exists()


def test_a_source_only_run_is_judged_by_the_validators_too(trained_run):
    """source-only trains on no target image, but its model is scored on the unlabeled target."""
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["validators"]) == {*VALIDATORS, "source_accuracy", "est_accuracy"}
    assert all(np.isfinite(v) for v in metrics["validators"].values())
