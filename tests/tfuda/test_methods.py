"""FixMatch, DANN, contrastive and the settings: pieces checked by hand, then each end to end."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from export.savedmodel import main as export_main
from pipelines.errors import UserError
from pipelines.sources import open_source
from pipelines.splits import carve_per_class, per_class_indices
from tfuda.engine.evaluate import evaluate
from tfuda.methods.contrastive import nt_xent
from tfuda.methods.dann import grl_lambda, reverse_gradient
from tfuda.methods.fixmatch import fixed_threshold_mask
from tfuda.methods.schedules import AnnealedLR
from tfuda.train import main


def test_gradient_reversal_flips_and_scales():
    x = tf.constant([[1.0, -2.0, 3.0]])
    scale = tf.constant(0.3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = reverse_gradient(x, scale)
        loss = tf.reduce_sum(y * tf.constant([[2.0, 5.0, -1.0]]))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_allclose(tape.gradient(loss, x), [[-0.6, -1.5, 0.3]], rtol=1e-6)


def test_dann_schedules():
    assert float(grl_lambda(tf.constant(0.0))) == pytest.approx(0.0)
    assert float(grl_lambda(tf.constant(1.0))) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert float(grl_lambda(tf.constant(0.1))) == pytest.approx(2 / (1 + math.exp(-1)) - 1, rel=1e-6)
    schedule = AnnealedLR(0.01, 100)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(50)) == pytest.approx(0.01 / 6**0.75, rel=1e-6)
    assert float(schedule(100)) == pytest.approx(0.01 / 11**0.75, rel=1e-6)
    assert AnnealedLR.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_ema_decay_warms_up_and_waits_for_its_start():
    from tfuda.engine.ema import ema_decay

    values = [float(ema_decay(tf.constant(t), 0.999)) for t in (-50, -1, 0, 10, 10**6)]
    assert values == pytest.approx([0.0, 0.0, 0.1, 11 / 20, 0.999])
    from tfuda.methods.contrastive import Contrastive

    assert Contrastive(pretrain_fraction=0.25).ema_start(400) == 100


def test_fixmatch_mask_uses_a_fixed_threshold():
    probs = tf.constant([[0.96, 0.04], [0.94, 0.06], [0.5, 0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(fixed_threshold_mask(probs, 0.95), [1, 0, 0, 1])


def test_nt_xent_on_a_hand_made_batch():
    # Two images, views identical and orthogonal to the other image: similarity 1 with the
    # positive, 0 with each of the 2 negatives.
    z = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
    assert float(nt_xent(z, z, t)) == pytest.approx(expected, rel=1e-6)
    # Swapping the positives makes it worse.
    assert float(nt_xent(z, z[::-1], t)) > expected


def test_per_class_split_is_per_class_and_deterministic():
    labels = np.array([0, 1, 2] * 10)
    first = per_class_indices(labels, 3, 3, seed=5)
    assert np.bincount(labels[first]).tolist() == [3, 3, 3]
    np.testing.assert_array_equal(first, per_class_indices(labels, 3, 3, seed=5))
    assert not np.array_equal(first, per_class_indices(labels, 3, 3, seed=6))
    carved = carve_per_class(open_source("digits"), 2, 0, "--source")
    assert carved.info.num_examples == 20
    assert sorted(int(y) for _, y in carved.dataset().as_numpy_iterator()) == sorted(list(range(10)) * 2)
    from pipelines.errors import DataError

    with pytest.raises(DataError, match="fewer than --labeled-per-class"):
        carve_per_class(open_source("digits:test"), 1000, 0, "--source")


ARGS = ["--steps", "3", "--batch-size", "4", "--eval-every", "100", "--checkpoint-every", "100", "--no-report"]


@pytest.mark.parametrize("method, extra", [
    ("fixmatch", ["--uratio", "2"]),
    ("dann", []),
    ("contrastive", ["--pretrain-steps", "2", "--finetune-steps", "2"]),
    ("source-only", []),
])
def test_each_method_trains_and_exports(tmp_path, method, extra):
    run = tmp_path / "run"
    assert main([*ARGS, "--method", method, *extra, "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["method"] == method
    assert metrics["steps"] == (4 if method == "contrastive" else 3)
    # The reported accuracy is the saved model's on the evaluation set ...
    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert evaluate(model, open_source("digits-m:test"), 32).accuracy == pytest.approx(metrics["target_accuracy"])
    # ... and the exported SavedModel answers as that model does.
    assert export_main(["--run", str(run), "--out", str(tmp_path / "exp"), "--formats", "savedmodel",
                        "--max-eval-images", "32", "--no-report"]) == 0
    serving = tf.saved_model.load(str(tmp_path / "exp" / "serving" / "tfuda" / "1")).signatures["serving_default"]
    images = next(iter(open_source("digits-m:test").dataset().batch(16)))[0]
    np.testing.assert_allclose(serving(images=images)["probabilities"],
                               tf.nn.softmax(model(tf.cast(images, tf.float32))), atol=1e-5)


@pytest.mark.parametrize("name, keys", [
    ("dann", {"losses/source", "losses/domain", "monitors/grl_lambda", "monitors/domain_accuracy"}),
    ("contrastive", {"losses/contrastive", "losses/source", "monitors/phase"}),
    ("fixmatch", {"losses/source", "losses/target", "monitors/mask_rate"}),
])
def test_methods_return_finite_losses_and_their_monitors(name, keys):
    from pipelines.feeds import FeedSpec, make_feed
    from tfuda.methods import METHODS
    from tfuda.models import build_model

    cls = METHODS[name]
    spec = FeedSpec(4, 1, 16, cls.source_views, cls.target_views)
    batch = next(iter(make_feed(open_source("digits"), open_source("digits-m"), spec)))
    model = build_model("cnn-small", 10, 16)
    method = cls()
    method.build(model)
    for progress in (0.2, 0.8):
        loss, logs = method.loss(model, batch, tf.constant(progress))
        assert np.isfinite(float(loss)) and set(logs) == keys
    if name == "contrastive":  # phase 0 below pretrain_fraction (0.5), 1 above
        assert float(method.loss(model, batch, tf.constant(0.2))[1]["monitors/phase"]) == 0.0
        assert float(method.loss(model, batch, tf.constant(0.8))[1]["monitors/phase"]) == 1.0


@pytest.mark.parametrize("extra, printed", [
    (["--setting", "ssl", "--source", "digits", "--labeled-per-class", "2"], "digits[2/class] -> digits"),
    (["--setting", "ssda", "--target-labeled", "digits-m", "--labeled-per-class", "1"],
     "digits + digits-m[1/class] -> digits-m"),
])
def test_ssl_and_ssda_settings_run(tmp_path, capsys, extra, printed):
    assert main([*ARGS, *extra, "--out", str(tmp_path / "run")]) == 0
    assert printed in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--setting", "ssl"], "--setting ssl needs --labeled-per-class"),
    (["--setting", "ssda", "--labeled-per-class", "2"], "--setting ssda needs --target-labeled"),
    (["--labeled-per-class", "2"], "need --setting ssl or ssda"),
    (["--setting", "ssl", "--labeled-per-class", "2", "--method", "source-only"], "choose adamatch or fixmatch"),
    (["--source", "digits-m:test"], "--target is required"),
    (["--pretrain-steps", "3"], "apply to --method contrastive only"),
    (["--method", "nope"], "known methods: adamatch, fixmatch, dann, contrastive, source-only"),
])
def test_settings_that_do_not_fit_the_data(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_label_smoothed_cross_entropy_by_hand():
    from tfuda.methods.base import cross_entropy

    logits = tf.math.log(tf.constant([[0.5, 0.25, 0.25]]))
    plain = -math.log(0.5)
    smoothed = 0.9 * plain + 0.1 * -(math.log(0.5) + 2 * math.log(0.25)) / 3  # (1 - eps) CE + eps mean(-log p)
    assert float(cross_entropy(tf.constant([0]), logits)[0]) == pytest.approx(plain, abs=1e-6)
    assert float(cross_entropy(tf.constant([0]), logits, 0.1)[0]) == pytest.approx(smoothed, abs=1e-6)


def test_source_only_trains_on_the_view_it_is_given():
    from tfuda.api import feed
    from tfuda.methods import SourceOnly
    from tfuda.models import build_model

    weak, strong = (next(iter(feed(SourceOnly(augment=view), "digits", batch_size=4, image_size=16)))
                    for view in ("weak", "strong"))
    assert set(weak["source"]) == {"labels", "weak"} and set(strong["source"]) == {"labels", "strong"}
    model = build_model("cnn-small", 10, 16)
    method = SourceOnly.from_config(SourceOnly(augment="strong").get_config())
    loss, _ = method.loss(model, strong, tf.constant(0.5))
    expected = keras.losses.sparse_categorical_crossentropy(strong["source"]["labels"], model(
        strong["source"]["strong"], training=True), from_logits=True)
    assert float(loss) == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-5)
    with pytest.raises(UserError, match="augment=heavy: give weak or strong"):
        SourceOnly(augment="heavy")


def test_contrastive_makes_only_the_views_of_the_steps_phase():
    from pipelines.feeds import make_feed
    from tfuda.engine.run import method_feed_spec
    from tfuda.methods import Contrastive

    method = Contrastive(pretrain_fraction=0.5)
    phased = method_feed_spec(method, global_batch_size=4, uratio=1, image_size=16, total_steps=4)
    every = method_feed_spec(method, global_batch_size=4, uratio=1, image_size=16)
    sources = open_source("digits"), open_source("digits-m")
    for step, (a, b) in enumerate(zip(make_feed(*sources, phased).take(4), make_feed(*sources, every).take(4))):
        pretraining = step < 2
        for part, view in [("source", "weak"), ("source", "strong"), ("source", "strong2"),
                           ("target", "strong"), ("target", "strong2")]:
            used = pretraining != (view == "weak")
            made = bool(tf.reduce_any(a[part][view] != 0))
            assert made == used, (step, part, view)
            if used:
                np.testing.assert_array_equal(a[part][view].numpy(), b[part][view].numpy())
