"""`--select` and `--on-collapse rollback`: which evaluation's EMA weights become model.keras."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

RUN = ["--steps", "6", "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2", "--no-report",
       "--validation-size", "64"]


def alarm_from(monkeypatch, first_alarmed: int | None):
    """Makes the collapse alarm fire from the `first_alarmed`-th evaluation on (1-based; None: never)."""
    from tfuda.validate import sample as sample_module

    calls = []

    def alarm(probs, prior, names):
        calls.append(1)
        return "forced" if first_alarmed is not None and len(calls) >= first_alarmed else None

    monkeypatch.setattr(sample_module, "collapse_alarm", alarm)


def predictions(path):
    import keras

    import tfuda.models.applications  # noqa: F401

    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    return keras.saving.load_model(path, compile=False).predict(images, verbose=0)


def history_scores(metrics, name):
    return {entry["step"]: entry[f"validators/{name}"] for entry in metrics["eval_history"]}


def replayed_step(metrics, by):
    """The step of the evaluation that the benchmarks' replay of `--select by` (bench/accuracy.py) keeps."""
    spec = importlib.util.spec_from_file_location("bench_accuracy", Path(__file__).parents[2] / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.selected_evaluation(metrics, by)["step"]


def test_select_keeps_the_evaluation_with_the_best_validator(tmp_path, monkeypatch):
    from tfuda.train import main

    alarm_from(monkeypatch, None)
    out = tmp_path / "run"
    assert main([*RUN, "--select", "bnm", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scores = history_scores(metrics, "bnm")
    best = max(scores, key=scores.get)
    assert metrics["selection"]["by"] == "bnm" and metrics["selection"]["step"] == best == replayed_step(metrics, "bnm")
    assert metrics["selection"]["score"] == pytest.approx(scores[best])
    assert "highest bnm" in metrics["selection"]["reason"] and "of 3 evaluations" in metrics["selection"]["reason"]
    # The run's model is the selected evaluation's weights, and its reported scores are that model's.
    np.testing.assert_allclose(predictions(out / "model.keras"), predictions(out / "selected" / "model.keras"))
    assert metrics["validators"]["bnm"] == pytest.approx(scores[best], rel=1e-4)
    accuracy = {e["step"]: e["eval/target_accuracy"] for e in metrics["eval_history"]}
    assert metrics["target_accuracy"] == pytest.approx(accuracy[best], abs=1e-6)


def test_select_last_writes_no_candidate_and_says_so(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["selection"] == {"by": "last", "step": 6, "score": None,
                                    "reason": "the final EMA weights (--select last)"}
    assert not (tiny_run / "selected").exists()


def test_alarmed_evaluations_are_never_selected(tmp_path, monkeypatch):
    from tfuda.train import main

    alarm_from(monkeypatch, 2)  # evaluations at steps 4 and 6 collapse
    out = tmp_path / "run"
    assert main([*RUN, "--select", "entropy", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["selection"]["step"] == 2 == replayed_step(metrics, "entropy")


def test_rollback_stops_and_keeps_the_last_evaluation_before_the_collapse(tmp_path, monkeypatch, capsys):
    from tfuda.train import main

    alarm_from(monkeypatch, 2)
    out = tmp_path / "run"
    assert main([*RUN, "--on-collapse", "rollback", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "rolls back to the evaluation at step 2" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "rolled_back" and metrics["steps"] == 4
    assert metrics["selection"]["step"] == 2 and "rolled back" in metrics["selection"]["reason"]
    assert [a["step"] for a in metrics["alarms"]] == [4]
    np.testing.assert_allclose(predictions(out / "model.keras"), predictions(out / "selected" / "model.keras"))


def test_rollback_with_nothing_to_roll_back_to_fails_like_stop(tmp_path, monkeypatch, capsys):
    from tfuda.train import main

    alarm_from(monkeypatch, 1)
    out = tmp_path / "run"
    assert main([*RUN, "--on-collapse", "rollback", "--out", str(out)]) == 1
    assert "--on-collapse rollback" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["status"] == "collapsed"
    assert not (out / "model.keras").exists()


def test_the_selection_survives_a_resume(tmp_path, monkeypatch):
    from tfuda.train import main

    alarm_from(monkeypatch, None)
    out = tmp_path / "run"
    assert main([*RUN[:1], "4", *RUN[2:], "--select", "im", "--out", str(out)]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert main(["--out", str(out), "--resume", "--steps", "6", "--no-report"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    scores = {**history_scores(first, "im"), **history_scores(second, "im")}
    assert sorted(scores) == [2, 4, 6]
    assert second["selection"]["step"] == max(scores, key=scores.get)
    assert "of 3 evaluations" in second["selection"]["reason"]


@pytest.mark.parametrize("how", ["flag", "file"])
def test_an_unknown_validator_is_one_error_line(tmp_path, capsys, how):
    from tfuda.train import main

    if how == "flag":
        with pytest.raises(SystemExit) as exit_info:
            main(["--select", "accuracy", "--out", str(tmp_path / "r")])
        assert exit_info.value.code == 2
        assert "argument --select: invalid choice: 'accuracy'" in capsys.readouterr().err
    else:
        config = tmp_path / "c.yaml"
        config.write_text("select: accuracy\n")
        assert main(["--config", str(config), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "--select must be last or a validator (entropy, im" in err
    assert not (tmp_path / "r").exists()
