"""The training CLI end to end, in-process through `main(argv)`."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_RUN_ARGS
from tfuda.train import main, prepare_run


def test_run_directory_layout_and_metrics(tiny_run):
    for name in ("config.json", "class_names.json", "metrics.json", "model.keras"):
        assert (tiny_run / name).is_file(), name
    assert list((tiny_run / "logs" / "train").glob("events.out.tfevents.*"))
    assert tf.train.latest_checkpoint(str(tiny_run / "checkpoints")).endswith("ckpt-6")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 6
    assert 0.0 <= metrics["target_accuracy"] <= 1.0 and 0.0 <= metrics["source_accuracy"] <= 1.0
    assert sorted(metrics["per_class_target_accuracy"]) == [str(i) for i in range(10)]
    assert metrics["wall_time_s"] > 0
    assert metrics["config"]["method"] == "adamatch" and metrics["eval_target"] == "digits-m:test"
    assert [h["step"] for h in metrics["eval_history"]] == [3, 6]
    assert json.loads((tiny_run / "class_names.json").read_text()) == [str(i) for i in range(10)]
    assert metrics["environment"]["tensorflow"] == tf.__version__ and "cores" in metrics["environment"]["cpu"]


def test_saved_model_matches_reported_accuracy(tiny_run):
    import keras

    from pipelines.sources import open_source
    from tfuda.engine.evaluate import evaluate

    model = keras.saving.load_model(tiny_run / "model.keras", compile=False)
    result = evaluate(model, open_source("digits-m:test"), 32)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert result.accuracy == pytest.approx(metrics["target_accuracy"])


def test_resume_continues_the_step_count(tmp_path):
    out = str(tmp_path / "run")
    args = ["--batch-size", "4", "--checkpoint-every", "2", "--eval-every", "100", "--no-report", "--out", out]
    assert main(["--steps", "2", *args]) == 0
    first_wall = json.loads((tmp_path / "run" / "metrics.json").read_text())["wall_time_s"]
    assert main(["--steps", "4", "--resume", *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 4
    assert metrics["wall_time_s"] > first_wall  # summed over both sessions
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(out + "/checkpoints"))
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 4


def test_resume_keeps_the_evaluation_history_and_alarms(tmp_path, monkeypatch):
    import tfuda.validate.sample

    monkeypatch.setattr(tfuda.validate.sample, "collapse_alarm", lambda probs, prior, names: "test alarm")
    out = str(tmp_path / "run")
    args = ["--batch-size", "4", "--checkpoint-every", "2", "--eval-every", "1", "--validation-size", "16",
            "--no-report", "--out", out]
    assert main(["--steps", "3", *args]) == 0  # evaluated at 1, 2, 3; checkpointed at 2 and 3
    assert main(["--steps", "5", "--resume", *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["step"] for h in metrics["eval_history"]] == [1, 2, 3, 4, 5]
    assert [a["step"] for a in metrics["alarms"]] == [1, 2, 3, 4, 5]


def test_non_finite_loss_stops_with_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from tfuda.methods.adamatch import AdaMatch

    original = AdaMatch.loss

    def poisoned(self, model, batch, progress):
        loss, logs = original(self, model, batch, progress)
        return tf.where(progress >= 0.5, np.nan, loss), logs

    monkeypatch.setattr(AdaMatch, "loss", poisoned)
    out = tmp_path / "run"
    code = main(["--steps", "6", "--batch-size", "4", "--checkpoint-every", "2", "--eval-every", "100",
                 "--out", str(out)])
    assert code == 1
    assert "non-finite loss at step 4" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["steps"] == 4
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert latest.endswith("ckpt-2") and metrics["last_checkpoint"] == latest
    assert not (out / "model.keras").exists()
    reader = tf.train.load_checkpoint(latest)
    names = [n for n, _ in tf.train.list_variables(latest) if n.startswith("classifier/")]
    assert names and all(np.isfinite(reader.get_tensor(n)).all() for n in names)


def test_mixed_precision_path(tmp_path):
    import keras

    out = tmp_path / "run"
    assert main(["--steps", "2", "--batch-size", "4", "--mixed-precision", "--eval-every", "100", "--image-size", "16",
                 "--validation-size", "64", "--no-report", "--out", str(out)]) == 0  # float16 is slow on CPU
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["mixed_precision"] and metrics["steps"] == 2
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.get_layer("logits").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("momentum, nesterov", [("nesterov", True), ("plain", False)])
def test_momentum_chooses_the_optimizer(momentum, nesterov):
    import tensorflow as tf

    from tfuda.config import Config
    from tfuda.engine.run import build_training_model
    from tfuda.methods import SourceOnly
    from tfuda.models import build_model

    config = Config(source="digits", momentum=momentum, batch_size=4, image_size=16, lr=0.03, steps=10)
    trainer = build_training_model(config, SourceOnly(), lambda: build_model("cnn-small", 10, 16), None,
                                   tf.distribute.get_strategy())
    assert trainer.optimizer.nesterov is nesterov and trainer.optimizer.momentum == 0.9
    with pytest.raises(ValueError, match="--momentum must be one of nesterov, plain, got 'heavy'"):
        Config(source="digits", momentum="heavy").validate()


def test_an_unset_momentum_is_the_methods():
    from tfuda.config import Config
    from tfuda.methods import METHODS

    for name, given, expected in [("adamatch", None, "plain"), ("fixmatch", None, "nesterov"),
                                  ("adamatch", "nesterov", "nesterov"), ("dann", "plain", "plain")]:
        config = Config(source="digits", method=name, momentum=given)
        METHODS[name].fill_defaults(config)
        assert config.momentum == expected and config.lr == METHODS[name].default_lr


def test_config_file_loses_to_explicit_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 40\nbatch_size: 8\nmodel: wrn-28-2\n")
    config, run, resume = prepare_run({"config": str(cfg), "steps": 7, "out": str(tmp_path / "r")})
    assert (config.steps, config.batch_size, config.model) == (7, 8, "wrn-28-2")
    assert json.loads(run.config_file.read_text())["steps"] == 7 and not resume


def test_a_run_keeps_its_hyper_parameters_when_a_default_changes(tmp_path, monkeypatch):
    from tfuda.config import ConfigError
    from tfuda.methods.adamatch import AdaMatch
    from tfuda.train import build_parser

    def cli(*argv):
        return vars(build_parser().parse_args([*argv, "--out", str(tmp_path / "run")]))

    prepare_run(cli("--steps", "4", "--method-arg", "tau=0.8"))
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["method_args"]
    defaults = {name: p.default for name, p in AdaMatch.hyperparameters().items()}
    assert recorded == {**defaults, "tau": 0.8} and recorded["alignment"] == "batch"  # the defaults too
    later = [("running" if name == "alignment" else value) for name, value in defaults.items()]
    monkeypatch.setattr(AdaMatch.__init__, "__defaults__", tuple(later))  # a later release
    for argv in [(), ("--method-arg", "tau=0.80")]:  # the same value, written differently
        config, _, resume_from = prepare_run(cli("--resume", "--steps", "8", *argv))
        assert resume_from is not None and config.steps == 8
        assert AdaMatch.for_run(config).alignment == "batch"
        assert json.loads((tmp_path / "run" / "config.json").read_text())["method_args"] == recorded
    with pytest.raises(ConfigError, match=r"--method-arg cannot change: tau was 0.8, given 0.7"):
        prepare_run(cli("--resume", "--method-arg", "tau=0.7"))


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--method", "nope"], "known methods: adamatch"),
    (["--model", "nope"], "known models: cnn-small"),
    (["--source", "digits-m", "--target", "npz:/no/such.npz"], "does not exist"),
    (["--resume"], "--resume needs --out"),
])
def test_bad_flags_give_one_clear_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "r")] if "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_existing_out_is_not_clobbered(tiny_run, capsys):
    assert main([*TINY_RUN_ARGS, "--out", str(tiny_run)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_bad_config_file_key(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"batchsize": 8}')
    assert main(["--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key(s) batchsize" in capsys.readouterr().err


def test_resuming_contrastive_with_more_steps_extends_fine_tuning(tmp_path):
    out = str(tmp_path / "run")
    args = ["--method", "contrastive", "--batch-size", "4", "--checkpoint-every", "2", "--eval-every", "100",
            "--no-report", "--out", out]
    assert main(["--steps", "4", *args]) == 0
    assert main(["--steps", "6", "--resume", *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert (metrics["config"]["pretrain_steps"], metrics["config"]["finetune_steps"]) == (2, 4)


def test_resuming_contrastive_into_its_pretraining_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["--method", "contrastive", "--batch-size", "4", "--pretrain-steps", "3", "--finetune-steps", "1",
            "--checkpoint-every", "2", "--eval-every", "100", "--no-report", "--out", out]
    assert main(args) == 0
    assert main(["--resume", "--steps", "3", "--method", "contrastive", "--out", out]) == 2
    assert "--steps 3 leaves no room for both phases" in capsys.readouterr().err


@pytest.mark.parametrize("labeled, extra, eval_spec", [
    ("digits-m:test", [], "digits-m:test"),  # the default evaluation set: the target's held-out split
    ("digits-m", ["--eval-target", "digits-m:train"], "digits-m:train"),  # the same split, named two ways
])
def test_ssda_labeled_target_that_is_the_evaluation_set_is_refused(tmp_path, capsys, labeled, extra, eval_spec):
    assert main(["--setting", "ssda", "--target-labeled", labeled, "--labeled-per-class", "2", *extra,
                 "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"--target-labeled '{labeled}' is the target evaluation set '{eval_spec}'" in err
    assert "Traceback" not in err


def test_canonical_specs_name_the_same_data(tmp_path):
    from pipelines.sources import canonical_spec

    assert canonical_spec("digits-m") == canonical_spec("digits-m:train") != canonical_spec("digits-m:test")
    (tmp_path / "imgs").mkdir()
    assert canonical_spec(str(tmp_path / "imgs")) == canonical_spec(str(tmp_path / "imgs") + "/")
    assert canonical_spec("tfds:mnist") == canonical_spec("tfds:mnist:train")


def test_a_tfds_run_in_a_custom_data_dir_trains_reports_and_exports(tmp_path):
    # Train, the report at its end and the export open the run's data one way, with its
    # --tfds-data-dir (the report and export once fell back to ~/tensorflow_datasets).
    from export.savedmodel import main as export_main
    from tests import tiny_tfds

    data_dir = tmp_path / "tfds"
    tiny_tfds.prepare(data_dir)
    run = tmp_path / "run"
    assert main(["--source", "tfds:tiny_digits", "--target", "tfds:tiny_digits:test", "--tfds-data-dir",
                 str(data_dir), "--steps", "2", "--batch-size", "4", "--eval-every", "100",
                 "--out", str(run)]) == 0
    assert (run / "report" / "index.html").is_file()
    assert export_main(["--run", str(run), "--out", str(tmp_path / "exp"), "--formats", "savedmodel",
                        "--no-report"]) == 0
    report = json.loads((tmp_path / "exp" / "reports" / "tfuda" / "1.json").read_text())
    assert report["eval_set"] == "tfds:tiny_digits:test" and report["num_images"] == 30
