"""`tfuda.adapt` / `tfuda.evaluate` / `export.export_model`: the Python API on a user's own model and
datasets, its equivalence with the command line, and its errors before training."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import export
import tfuda
from pipelines import builtin
from pipelines.errors import UserError
from tfuda.train import main

L = keras.layers
STEPS = {"steps": 6, "batch_size": 8, "eval_every": 3, "checkpoint_every": 3, "seed": 1}


def small_model(outputs: int = 10, size: int = 16) -> keras.Model:
    return keras.Sequential([keras.Input((size, size, 3)), L.Rescaling(1 / 127.5, offset=-1), L.Conv2D(8, 3),
                             L.BatchNormalization(), L.ReLU(), L.GlobalAveragePooling2D(name="features"),
                             L.Dense(outputs)], name="user_model")


@pytest.fixture(scope="module")
def domains():
    """`(source, target, target test)` tf.data datasets from the built-in pair (first images)."""
    xs, ys = builtin.load("digits", "train")
    xt, _ = builtin.load("digits-m", "train")
    xe, ye = builtin.load("digits-m", "test")
    return (tf.data.Dataset.from_tensor_slices((xs[:200], ys[:200])), tf.data.Dataset.from_tensor_slices(xt[:200]),
            tf.data.Dataset.from_tensor_slices((xe[:100], ye[:100])))


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps, self.keys = 0, set()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.keys |= set(logs)


def test_adapt_trains_a_users_sequential_on_datasets(domains, tmp_path):
    source, target, test = domains
    counter = CountSteps()
    model = small_model()
    before = [w.copy() for w in model.get_layer("conv2d").get_weights()] if "conv2d" in [
        layer.name for layer in model.layers] else None
    result = tfuda.adapt(model, source, target, method=tfuda.AdaMatch(tau=0.8), eval_target=test,
                         embedding="features", run_dir=tmp_path / "run", verbose=False,
                         callbacks=[counter, keras.callbacks.TensorBoard(str(tmp_path / "tb"), update_freq=1)], **STEPS)
    assert counter.steps == 6 and {"loss", "losses/source", "monitors/mask_rate"} <= counter.keys
    assert list((tmp_path / "tb" / "train").glob("events.out.tfevents.*"))
    assert result.class_names == [str(k) for k in range(10)]
    assert result.model.output_shape == (None, 10) and result.run_dir == tmp_path / "run"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 6
    defaults = {name: p.default for name, p in tfuda.AdaMatch.hyperparameters().items()}
    assert metrics["config"]["method_args"] == {**defaults, "tau": 0.8}  # every hyper-parameter, defaults too
    assert metrics["config"]["source"] == "dataset:source" and metrics["config"]["eval_target"] == "dataset:eval_target"
    assert set(result.validators) >= {"bnm", "im", "entropy"}
    assert result.target_accuracy == pytest.approx(tfuda.evaluate(result.model, test).accuracy)
    if before is not None:
        assert not np.allclose(before[0], model.get_layer("conv2d").get_weights()[0])


def test_stock_keras_callbacks_work_at_their_defaults(domains, tmp_path):
    source, target, test = domains
    board, table = tmp_path / "tb", tmp_path / "log.csv"
    stop = keras.callbacks.EarlyStopping(monitor="val_entropy", mode="max", patience=0, min_delta=10.0)
    tfuda.adapt(small_model(), source, target, eval_target=test, run_dir=tmp_path / "run", verbose=False,
                callbacks=[keras.callbacks.TensorBoard(str(board)), keras.callbacks.CSVLogger(str(table)),
                           keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.keras")), stop],
                learning_rate=0.01, jit_compile=False, **{**STEPS, "steps": 9, "eval_every": 3})
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and stop.stopped_epoch == 1  # no gain of 10 nats: stopped after epoch 2
    assert metrics["config"]["lr"] == 0.01 and metrics["config"]["xla"] == "off"
    rows = table.read_text().splitlines()
    columns = set(rows[0].split(","))
    assert len(rows) == 3 and {"epoch", "loss", "val_target_accuracy", "val_bnm", "val_entropy"} <= columns
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.keras")) == ["ckpt-1.keras", "ckpt-2.keras"]
    saved = keras.saving.load_model(tmp_path / "ckpt-2.keras")
    assert saved.output_shape == (None, 10)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = EventAccumulator(str(board / "train")).Reload()
    validation = EventAccumulator(str(board / "validation")).Reload()
    assert "epoch_loss" in train.Tags()["tensors"] + train.Tags()["scalars"]
    tags = validation.Tags()["tensors"] + validation.Tags()["scalars"]
    assert {"epoch_target_accuracy", "epoch_bnm"} <= set(tags)


def test_adapt_with_a_temporary_run_directory_leaves_nothing_behind(domains, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    source, target, _ = domains
    result = tfuda.adapt(small_model(), source, target, method="source-only", verbose=False,
                         **{**STEPS, "steps": 2, "eval_every": 2})
    assert result.run_dir is None and result.metrics["status"] == "completed"
    assert not list(tmp_path.iterdir())
    assert result.model(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 10)


def test_adapt_is_the_command_line_run(tmp_path):
    """Same settings, same seed: the CLI (`train_run`) and `tfuda.adapt` give the same model."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in STEPS.items()]
    assert main([*args, "--image-size", "16", "--no-report", "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    keras.utils.set_random_seed(STEPS["seed"])
    model = tfuda.build_model("cnn-small", 10, 16)
    result = tfuda.adapt(model, "digits", "digits-m", run_dir=tmp_path / "api", verbose=False, **STEPS)
    assert result.target_accuracy == pytest.approx(cli["target_accuracy"], abs=1e-9)
    for name, value in cli["validators"].items():
        assert result.validators[name] == pytest.approx(value, rel=1e-5, abs=1e-6)
    assert result.metrics["eval_target"] == cli["eval_target"] == "digits-m:test"


def test_adapt_resumes_a_run(domains, tmp_path):
    source, target, _ = domains
    run = tmp_path / "run"
    tfuda.adapt(small_model(), source, target, run_dir=run, verbose=False, **{**STEPS, "steps": 3})
    result = tfuda.adapt(small_model(), source, target, run_dir=run, resume=True, verbose=False, **STEPS)
    assert result.metrics["steps"] == 6
    with pytest.raises(UserError, match="exists and is not empty.*resume=True"):
        tfuda.adapt(small_model(), source, target, run_dir=run, verbose=False, **STEPS)


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 4}, r"batch_size cannot change \(was 8, given 4\)"),
    ({"lr": 0.01}, "lr cannot change"),
    ({"seed": 2}, "seed cannot change"),
    ({"method": tfuda.AdaMatch(tau=0.7)}, "method_arg cannot change: tau was 0.9, given 0.7"),
    ({"method": "fixmatch"}, "method cannot change"),
])
def test_adapt_refuses_a_resume_that_changes_the_run(domains, tmp_path, change, message):
    source, target, _ = domains
    run = tmp_path / "run"
    tfuda.adapt(small_model(), source, target, run_dir=run, verbose=False, **{**STEPS, "steps": 3})
    saved = (run / "config.json").read_text()
    with pytest.raises(UserError, match=message):
        tfuda.adapt(small_model(), source, target, run_dir=run, resume=True, verbose=False, **{**STEPS, **change})
    assert (run / "config.json").read_text() == saved


@pytest.mark.parametrize("call, message", [
    (lambda s, t: tfuda.adapt(small_model(outputs=3), s, t, class_names=list("abcdefghij")),
     "model: outputs 3 classes but there are 10 class names"),
    (lambda s, t: tfuda.adapt(small_model(outputs=3), s, t), r"source: labels must be in \[0, 3\).*found 0..9"),
    (lambda s, t: tfuda.adapt(small_model(), s.map(lambda x, y: (x, y, y)), t), "^source: elements must be"),
    (lambda s, t: tfuda.adapt(keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(10, 3),
                                                L.GlobalAveragePooling2D()]), s, t), "cannot find the classifier head"),
    (lambda s, t: tfuda.adapt(small_model(), s, t, batchsize=8), "unknown option.*batchsize.*batch_size"),
    (lambda s, t: tfuda.adapt(small_model(), s, t, batch_size=0), "^batch_size must be a positive integer"),
    (lambda s, t: tfuda.adapt(small_model(), s, t, method="adamatc"), "unknown --method 'adamatc'"),
    (lambda s, t: tfuda.adapt(small_model(), s, t, method=tfuda.AdaMatch(alignment="x")), "alignment=x"),
    (lambda s, t: tfuda.adapt(small_model(), s, None), "^target: method adamatch needs the unlabeled target"),
    (lambda s, t: tfuda.adapt(small_model(), t, t), "^source: method adamatch trains on labeled source images"),
    (lambda s, t: tfuda.adapt(small_model(), s, t, resume=True), "resume=True needs the run_dir"),
    (lambda s, t: tfuda.adapt(small_model(), s, t, eval_target=t),
     "^eval_target 'dataset:eval_target' has no labels; an evaluation set must be labeled"),
], ids=["outputs", "outputs-default-names", "structure", "no-embedding", "unknown-option", "bad-value", "unknown-method", "bad-hparam",
        "no-target", "unlabeled-source", "resume-nothing", "unlabeled-eval"])
def test_bad_input_is_a_value_error_before_training(domains, tmp_path, call, message):
    source, target, _ = domains
    with pytest.raises(ValueError, match=message):
        call(source, target)


def test_images_in_0_1_warn_before_training(domains):
    source, _, _ = domains
    scaled = source.map(lambda x, y: tf.cast(x, tf.float32) / 255.0)
    with pytest.warns(UserWarning, match="target: float images with values in 0..1"):
        with pytest.raises(UserError, match="batch_size"):  # stops right after the data checks
            tfuda.adapt(small_model(), source, scaled, batch_size=-1)


def test_methods_round_trip_their_config():
    for name, cls in tfuda.METHODS.items():
        method = cls()
        again = cls.from_config(method.get_config())
        assert again.get_config() == method.get_config(), name
    assert tfuda.AdaMatch.from_config({"tau": "0.7"}).tau == 0.7


def test_export_model_exports_and_verifies_a_model_not_a_run(domains, tmp_path):
    _, _, test = domains
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), L.Flatten(), L.Dense(10, activation="softmax")])
    report = export.export_model(model, [str(k) for k in range(10)], tmp_path / "exports", eval_data=test,
                                 formats=["savedmodel", "tflite"], quantize=["float32"], verbose=False)
    assert report["passed"] and report["eval_set"] == "dataset:eval_data" and report["num_images"] == 100
    assert (tmp_path / "exports" / "serving" / "tfuda" / "1" / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(str(tmp_path / "exports" / "serving" / "tfuda" / "1"))
    images = np.stack([x for x, _ in test.take(4).as_numpy_iterator()])
    served = loaded.signatures["serving_default"](images=tf.image.resize_with_pad(images, 16, 16).numpy().astype(
        np.uint8))["probabilities"].numpy()
    assert np.isfinite(served).all() and served.shape == (4, 10)
    with pytest.raises(UserError, match="class_names: 3 names for a model with 10 outputs"):
        export.export_model(model, ["a", "b", "c"], tmp_path / "x", eval_data=test)


def test_feed_gives_the_methods_views_from_two_datasets(domains):
    source, target, _ = domains
    batch = next(iter(tfuda.feed(tfuda.AdaMatch(), source, target, class_names=[str(k) for k in range(10)],
                                 image_size=16, batch_size=4, uratio=2)))
    assert set(batch["source"]) == {"labels", "weak", "strong"} and set(batch["target"]) == {"labels", "weak", "strong"}
    assert batch["source"]["weak"].shape == (4, 16, 16, 3) and batch["target"]["strong"].shape == (8, 16, 16, 3)
    assert batch["source"]["weak"].dtype == tf.float32 and set(batch["target"]["labels"].numpy()) == {-1}
    again = next(iter(tfuda.feed("adamatch", source, target, class_names=[str(k) for k in range(10)],
                                 image_size=16, batch_size=4, uratio=2)))
    np.testing.assert_array_equal(batch["target"]["strong"], again["target"]["strong"])  # seeded
    with pytest.raises(UserError, match="^target: method fixmatch needs the unlabeled target"):
        tfuda.feed("fixmatch", source, class_names=[str(k) for k in range(10)])


def test_adapt_source_free_from_a_model_in_memory(domains):
    _, target, test = domains
    model = small_model()
    result = tfuda.adapt(model, target=target, method=tfuda.TENT(), eval_target=test, verbose=False,
                         **{**STEPS, "steps": 2, "eval_every": 2})
    assert result.metrics["status"] == "completed" and result.metrics["config"]["source"] is None
    assert result.metrics["config"]["method"] == "tent" and result.target_accuracy is not None
    with pytest.raises(UserError, match="trains batch-normalisation layers, and the model has none"):
        tfuda.adapt(keras.Sequential([keras.Input((16, 16, 3)), L.Flatten(), L.Dense(10)]), target=target,
                    method="tent", verbose=False)


def test_an_adapted_model_trains_again_like_any_keras_model(domains, tiny_run):
    """The EMA model a run returns and saves keeps the given model's trainable flags: adapting it
    (or `fit` in Keras) trains, and the method's freezing (TENT: all but batch norm) stays inside
    the run. A model with nothing left to train is an error, not a run that silently changes nothing."""
    _, target, test = domains
    saved = keras.saving.load_model(tiny_run / "model.keras", compile=False)
    assert saved.trainable and len(saved.trainable_weights) == len(saved.weights) - 2 * len(
        [layer for layer in saved.layers if isinstance(layer, L.BatchNormalization)])
    model = small_model()
    result = tfuda.adapt(model, target=target, method=tfuda.TENT(), eval_target=test, verbose=False,
                         **{**STEPS, "steps": 2, "eval_every": 2})
    assert all(layer.trainable for layer in model.layers)  # the caller's model is as it was given
    assert all(layer.trainable for layer in result.model.layers)
    before = result.model.get_weights()
    again = tfuda.adapt(result.model, target=target, method=tfuda.SHOT(), embedding="features", verbose=False,
                        **{**STEPS, "steps": 2, "eval_every": 2, "ema_decay": 0.0})
    assert any(not np.allclose(a, b) for a, b in zip(before, again.model.get_weights()))
    frozen = small_model()
    frozen.trainable = False
    with pytest.raises(UserError, match="no trainable weights.*model.trainable = True"):
        tfuda.adapt(frozen, target=target, method="shot", embedding="features", verbose=False, **STEPS)
