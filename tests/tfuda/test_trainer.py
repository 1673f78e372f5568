"""The train step itself: one step counter, the EMA's first step, dropout masks, label-free losses."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines.feeds import FeedSpec, make_feed
from pipelines.sources import open_source
from tfuda.engine import run as run_module
from tfuda.engine.trainer import TrainingModel, make_optimizer
from tfuda.methods import METHODS, AdaMatch, SourceOnly
from tfuda.models import build_model
from tfuda.train import main


def test_the_ema_starts_at_step_zero():
    # After the first step (t = 0) the average is decay(0) = min(0.999, 1/10) = 0.1 of the
    # initial weights and 0.9 of the updated ones (tfuda.engine.ema).
    keras.utils.set_random_seed(0)
    model = build_model("cnn-small", 10, 16)
    adapter = TrainingModel(model, SourceOnly(), total_steps=10, ema_decay=0.999)
    adapter.compile(optimizer=make_optimizer(0.05))
    before = model.get_layer("logits").kernel.numpy().copy()
    feed = make_feed(open_source("digits"), None, FeedSpec(8, 1, 16, ("weak",), ()))
    adapter.make_train_function()
    adapter.train_function(iter(feed))
    after = model.get_layer("logits").kernel.numpy()
    average = adapter.ema.average.get_layer("logits").kernel.numpy()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(average, 0.1 * before + 0.9 * after, rtol=1e-5, atol=1e-6)


class RecordingDropout(keras.layers.Dropout):
    """Dropout that records the seed state each training call draws its mask from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.states = []

    def call(self, inputs, training=False):
        if training:
            self.states.append(tuple(self.seed_generator.state.numpy().tolist()))
        return super().call(inputs, training=training)


def _dropout_model(size=8, classes=3):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dropout = RecordingDropout(0.5, seed=1)
    return keras.Model(inputs, keras.layers.Dense(classes)(dropout(x))), dropout


def _batch(views_source, views_target, size=8, num_x=2, num_u=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)

    def part(views, n):
        out = {"labels": tf.constant(rng.integers(0, classes, n), tf.int64)}
        out.update({v: tf.constant(rng.uniform(0, 255, (n, size, size, 3)).astype("f4")) for v in views})
        return out

    batch = {"seed": tf.constant([0, 1], tf.int64), "source": part(views_source, num_x)}
    if views_target:
        batch["target"] = part(views_target, num_u)
    return batch


def test_adamatch_steps_never_reuse_a_dropout_mask():
    # The source-only pass restores the batch-norm statistics only: restoring the dropout
    # seed as well made the next step's joint pass reuse this step's source-only mask.
    model, dropout = _dropout_model()
    method = AdaMatch()
    batch = _batch(AdaMatch.source_views, AdaMatch.target_views)
    for _ in range(2):
        method.loss(model, batch, tf.constant(0.5))
    assert len(dropout.states) == 4  # joint and source-only pass, twice
    assert len(set(dropout.states)) == 4


def _loss_and_grads(method, model, batch, progress):
    variables = model.trainable_variables + [v for layer in method.extra_layers for v in layer.trainable_variables]
    with tf.GradientTape() as tape:
        loss, logs = method.loss(model, batch, tf.constant(progress))
    return float(loss), [g.numpy() if g is not None else None for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_no_loss_depends_on_target_labels(name):
    cls = METHODS[name]
    keras.utils.set_random_seed(0)
    model = build_model("cnn-small", 3, 8)
    method = cls()
    method.average = keras.models.clone_model(model)  # the EMA model, AdaMatch's refinement teacher
    method.average.set_weights(model.get_weights())
    method.build(model)
    method.monitor_target_labels = True  # monitors may read them; the loss must not
    batch = _batch(cls.source_views, cls.target_views)
    # both phases of contrastive; AdaMatch's warm-up, plateau and refinement stage
    for progress in (0.2, 0.6, 0.8):
        loss, grads = _loss_and_grads(method, model, batch, progress)
        if "target" in batch:
            shuffled = {**batch, "target": {**batch["target"],
                                            "labels": tf.constant([2, 0, 1, 1, 2, 0], tf.int64)}}
            assert not np.array_equal(shuffled["target"]["labels"], batch["target"]["labels"])
            other_loss, other_grads = _loss_and_grads(method, model, shuffled, progress)
            assert other_loss == pytest.approx(loss, rel=1e-6)
            for a, b in zip(grads, other_grads):
                if a is not None:
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_step_skipped_by_loss_scaling_still_counts(tmp_path, monkeypatch, capsys):
    # With an absurd initial loss scale every float16 gradient overflows, so the loss-scale
    # optimizer skips its update: the step must still count, once, everywhere.
    def overflowing(schedule, *, mixed_precision=False, nesterov=True):
        assert mixed_precision
        return keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule), initial_scale=2.0**60)

    monkeypatch.setattr(run_module, "make_optimizer", overflowing)
    out = tmp_path / "run"  # source-only, small images: float16 is slow on CPU
    args = ["--method", "source-only", "--batch-size", "4", "--mixed-precision", "--checkpoint-every", "2",
            "--eval-every", "100", "--image-size", "16", "--validation-size", "64", "--no-report", "--out", str(out)]
    assert main(["--steps", "4", *args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "checkpoints")))
    assert reader.get_tensor("optimizer/inner_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 4
    assert reader.get_tensor("optimizer/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE") < 2.0**60  # steps were skipped
    assert [h["step"] for h in metrics["eval_history"]] == [4]  # evaluated once, at the end
    capsys.readouterr()
    assert main(["--steps", "6", "--resume", *args]) == 0
    assert "steps 4->6" in capsys.readouterr().out  # the feed restarts at batch 4
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6


def _first_step(method_cls, *, xla: bool, on_device: bool, mixed_precision: bool = False, steps: int = 1):
    """Losses of `steps` train steps of a fresh seeded model on the same fixed feed batch, and the
    classifier's weights after them."""
    keras.utils.set_random_seed(0)
    spec = FeedSpec(8, 2, 16, method_cls.source_views, method_cls.target_views, seed=4, on_device=on_device)
    batch = next(iter(make_feed(open_source("digits"), open_source("digits-m"), spec)))
    model = build_model("cnn-small", 10, 16)
    trainer = TrainingModel(model, method_cls(), total_steps=100, feed_spec=spec)
    trainer.compile(optimizer=make_optimizer(0.05, mixed_precision=mixed_precision), jit_compile=xla)
    trainer.make_train_function()
    feed = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(feed)
    losses = [float(trainer.train_function(iterator)["loss"][0]) for _ in range(steps)]
    return losses, [w.numpy() for w in model.trainable_weights]


def test_xla_on_device_step_equals_the_default_step():
    # The same batch, the same init: the XLA-compiled step with augmentation on the device gives
    # the loss and update of TF's default path with augmentation in tf.data.
    loss_default, weights_default = _first_step(AdaMatch, xla=False, on_device=False)
    loss_xla, weights_xla = _first_step(AdaMatch, xla=True, on_device=True)
    assert loss_xla[0] == pytest.approx(loss_default[0], rel=1e-4)
    for a, b in zip(weights_default, weights_xla):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_mixed_precision_step_computes_in_float16_and_learns():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        losses, _ = _first_step(SourceOnly, xla=False, on_device=False, mixed_precision=True, steps=6)
        model = build_model("cnn-small", 10, 16)
        assert model.get_layer("conv0_0").compute_dtype == "float16"
        assert model.get_layer("logits").compute_dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
