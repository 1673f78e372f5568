"""A run's advice: still rising -> more steps; a run from a model that lost source accuracy says so."""

import json

import pytest

from tfuda.validate.advice import advice, rising_span


def still_rising(history):
    return rising_span(history) is not None


def history(*bnm, steps=(500, 1000, 1500, 2000), **extra):
    return [{"step": s, "validators/bnm": b, **{k: v[i] for k, v in extra.items()}} for i, (s, b) in
            enumerate(zip(steps, bnm))]


def test_rising_means_the_second_half_rose_and_the_end_did_not_fall():
    # digits -> mnist, AdaMatch: bnm at steps 500, 1000, 1500 (rising) and flat from 2000 on
    assert still_rising(history(0.0755, 0.0834, 0.0885))
    assert not still_rising(history(0.0755, 0.0834, 0.0885, 0.0906, 0.0901, steps=(500, 1000, 1500, 2000, 2500)))
    # AdaMatch at 1200 steps on the same task (accuracy 0.82, 0.92 with 3333 steps): rising
    assert still_rising(history(0.0816, 0.0877, 0.0883, steps=(500, 1000, 1200)))
    # source-only there: +9.6% over the second half but falling at the end; under 5%; falling
    assert not still_rising(history(0.0552, 0.0616, 0.0605, steps=(500, 1000, 1200)))
    assert not still_rising(history(0.0677, 0.0695, 0.0702, steps=(500, 1000, 1200)))
    assert not still_rising(history(0.09, 0.08, 0.07))
    assert not still_rising(history(0.08)) and not still_rising([])


def test_advice_names_the_steps_to_try():
    lines = advice(history(0.0755, 0.0834, 0.0861, steps=(500, 1000, 1200)), 1200)
    assert len(lines) == 1 and lines[0].startswith("advice: the label-free scores were still rising")
    assert "0.0755 -> 0.0834 -> 0.0861 at steps 500, 1000, 1200" in lines[0] and "--steps 2400" in lines[0]
    assert advice(history(0.0906, 0.0901, 0.0908), 1500) == []


def test_a_run_that_lost_source_accuracy_from_its_start_says_so():
    runs = history(0.067, 0.08, 0.086, steps=(0, 300, 600), **{"eval/source_accuracy": (0.997, 0.70, 0.504)})
    lines = advice(runs, 600)
    assert any(line.startswith("warning: accuracy on the held-out labeled source fell from 0.9970 at the start "
                               "to 0.5040") for line in lines)
    kept = history(0.067, 0.08, steps=(0, 600), **{"eval/source_accuracy": (0.997, 0.99)})
    assert not any("fell" in line for line in advice(kept, 600))
    # without a start (a run from scratch) there is nothing to compare with
    assert advice(history(0.08, 0.07, **{"eval/source_accuracy": (0.2, 0.1)}), 1000) == []



def test_a_run_whose_estimated_target_accuracy_fell_from_its_start_says_so():
    runs = history(0.067, 0.086, steps=(0, 600), **{"validators/est_accuracy": (0.62, 0.41)})
    assert advice(runs, 600) == ["warning: estimated target accuracy (no labels) fell from 0.6200 at the start to "
                                 "0.4100: adaptation likely made this model worse; compare it with the model it "
                                 "started from before deploying it"]
    assert advice(history(0.067, 0.07, steps=(0, 600), **{"validators/est_accuracy": (0.62, 0.60)}), 600) == []


@pytest.mark.parametrize("method", ["tent"])
def test_a_run_from_a_model_is_evaluated_at_its_start(tiny_run, tmp_path, method):
    import keras

    from pipelines.sources import open_source
    from tfuda.engine.evaluate import evaluate
    from tfuda.train import main

    out = tmp_path / "run"
    assert main(["--steps", "2", "--batch-size", "4", "--eval-every", "2", "--no-report", "--method", method,
                 "--init", str(tiny_run), "--eval-source", "digits:test", "--validation-size", "64",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    start = metrics["eval_history"][0]
    assert [e["step"] for e in metrics["eval_history"]] == [0, 2]
    init = keras.saving.load_model(tiny_run / "model.keras", compile=False)
    assert start["eval/source_accuracy"] == pytest.approx(evaluate(init, open_source("digits:test"), 32).accuracy)
    assert isinstance(metrics["advice"], list)
    # a source-free run given held-out labeled source images estimates its target accuracy from them
    assert 0.0 <= start["validators/est_accuracy"] <= 1.0
    assert metrics["estimated_target_accuracy"]["value"] == pytest.approx(metrics["validators"]["est_accuracy"], abs=1e-4)
