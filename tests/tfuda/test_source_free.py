"""`--init` and the source-free methods SHOT and TENT: losses by hand, what trains, runs, bad input."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfuda.methods.shot import SHOT, information_maximisation, nearest_centroid, shot_centroids
from tfuda.methods.tent import TENT
from tfuda.validate.entropy import entropies
from tfuda.models import build_model
from tfuda.models.foreign import as_classifier
from pipelines.sources import open_source
from tfuda.models.init import load_init
from tfuda.train import main

FAST = ["--steps", "2", "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2", "--no-report"]


def test_information_maximisation_by_hand():
    logits = tf.math.log(tf.constant([[0.5, 0.5], [1.0 - 1e-9, 1e-9]]))
    entropy, diversity = information_maximisation(logits)
    assert float(entropy) == pytest.approx(math.log(2) / 2, abs=1e-4)  # (log 2 + 0) / 2
    mean = np.array([0.75, 0.25])
    assert float(diversity) == pytest.approx(-(mean * np.log(mean)).sum(), abs=1e-4)


def test_tent_entropy_by_hand():
    logits = tf.math.log(tf.constant([[0.25, 0.25, 0.5], [1.0, 1e-12, 1e-12]]))
    expected = (-(0.25 * math.log(0.25)) * 2 - 0.5 * math.log(0.5)) / 2
    assert float(tf.reduce_mean(entropies(tf.nn.softmax(logits)))) == pytest.approx(expected, abs=1e-5)


def test_shot_centroids_find_the_clusters_and_skip_unpredicted_classes():
    # Two tight clusters along x and y; the predictions mislabel one point of each and never
    # predict class 2, which must then never be a pseudo-label.
    features = tf.constant([[5.0, 0.1], [5.0, -0.1], [4.9, 0.0], [0.1, 5.0], [-0.1, 5.0], [0.0, 4.9]])
    probs = tf.constant([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.4, 0.6, 0.0],
                         [0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    centroids, valid = shot_centroids(features, probs)
    assert valid.numpy().tolist() == [True, True, False]
    np.testing.assert_array_equal(nearest_centroid(features, centroids, valid), [0, 0, 0, 1, 1, 1])
    # Hard centroids are the mean of each cluster's normalized [x; 1].
    points = tf.math.l2_normalize(tf.concat([features, tf.ones([6, 1])], 1), 1).numpy()
    np.testing.assert_allclose(centroids[0], points[:3].mean(0), atol=1e-6)


def test_shot_freezes_the_head_and_tent_trains_only_batch_norm():
    model = build_model("cnn-small", 10, 16)
    SHOT().build(model)
    trainable = {v.path for v in model.trainable_variables}
    assert not any(p.startswith("logits/") for p in trainable)
    assert any(p.startswith("conv0_0/") for p in trainable) and any(p.endswith("gamma") for p in trainable)
    model = build_model("cnn-small", 10, 16)
    TENT().build(model)
    trainable = {v.path.split("/")[-1] for v in model.trainable_variables}
    assert trainable == {"gamma", "beta"}
    assert len(model.trainable_variables) == 2 * 6  # six batch-norm layers


def _foreign_model(path, softmax=True, batch_norm=True):
    """A classifier built without tfuda: 0..255 RGB 32x32 -> 10 probabilities (or logits)."""
    keras.utils.set_random_seed(3)
    layers = [keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255.0),
              keras.layers.Conv2D(8, 3, padding="same")]
    layers += [keras.layers.BatchNormalization()] if batch_norm else []
    layers += [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(10, activation="softmax" if softmax else None)]
    model = keras.Sequential(layers)
    model.save(path)
    return model


def test_a_foreign_model_is_brought_into_form_without_changing_its_answers(tmp_path):
    foreign = _foreign_model(tmp_path / "m.keras")
    converted = as_classifier(keras.saving.load_model(tmp_path / "m.keras"), origin="m.keras")
    images = tf.random.uniform([4, 32, 32, 3], 0, 255, seed=1)
    np.testing.assert_allclose(tf.nn.softmax(converted(images)), foreign(images), atol=1e-6)
    assert converted.get_layer("embedding").output.shape[-1] == 8


def test_init_from_a_tfuda_run_starts_from_its_weights(tiny_run, tmp_path):
    model, names = load_init(str(tiny_run))
    saved = keras.saving.load_model(tiny_run / "model.keras")
    assert names == [str(i) for i in range(10)] and model.trainable
    for a, b in zip(model.weights, saved.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    out = tmp_path / "shot"
    assert main([*FAST, "--method", "shot", "--init", str(tiny_run), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["source"] is None
    assert metrics["eval_target"] == "digits-m:test" and metrics["source_accuracy"] is None


def test_tent_adapts_a_foreign_model_and_exports_it(tmp_path):
    from export.savedmodel import main as export_main

    _foreign_model(tmp_path / "m.keras")
    (tmp_path / "names.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    out = tmp_path / "tent"
    assert main([*FAST, "--method", "tent", "--init", str(tmp_path / "m.keras"), "--class-names",
                 str(tmp_path / "names.txt"), "--out", str(out)]) == 0
    adapted = keras.saving.load_model(out / "model.keras")
    start = keras.saving.load_model(tmp_path / "m.keras")
    changed = {w.path.split("/")[-1] for w, s in zip(adapted.weights, start.weights)
               if not np.allclose(w.numpy(), s.numpy())}
    assert changed and changed <= {"gamma", "beta", "moving_mean", "moving_variance"}
    assert export_main(["--run", str(out), "--out", str(tmp_path / "exp"), "--formats", "savedmodel",
                        "--max-eval-images", "32", "--no-report"]) == 0


def test_reestimated_batch_norm_statistics_are_those_of_the_images():
    from tfuda.engine.batchnorm import reestimate_batch_norm

    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(4, 3, name="conv")
    norm = keras.layers.BatchNormalization(momentum=0.999, name="norm")
    model = keras.Sequential([keras.Input((8, 8, 3)), conv, norm])
    norm.trainable = False  # frozen layers are re-estimated too, and stay frozen
    images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3)).astype(np.uint8)
    reestimate_batch_norm(model, images, batch_size=16)
    outputs = conv(tf.cast(images, tf.float32)).numpy().reshape(4, 16, -1, 4)  # 4 batches of 16
    np.testing.assert_allclose(norm.moving_mean.numpy(), outputs.mean(axis=(1, 2)).mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), outputs.var(axis=(1, 2)).mean(0), rtol=1e-3)
    assert norm.momentum == 0.999 and not norm.trainable


def test_tent_saves_its_model_with_target_batch_norm_statistics(tiny_run, tmp_path):
    from tfuda.engine.batchnorm import reestimate_batch_norm
    from tfuda.validate.sample import TargetSample

    out = tmp_path / "tent"
    assert main([*FAST, "--method", "tent", "--init", str(tiny_run), "--validation-size", "64",
                 "--out", str(out)]) == 0
    adapted = keras.saving.load_model(out / "model.keras")
    keras.utils.set_random_seed(0)  # as the run (--seed 0) did before drawing its sample
    sample = TargetSample(open_source("digits-m"), 64, 32, 0)
    expected = keras.models.clone_model(adapted)
    expected.set_weights(adapted.get_weights())
    reestimate_batch_norm(expected, sample.images)
    for saved, again in zip(adapted.weights, expected.weights):
        np.testing.assert_allclose(saved.numpy(), again.numpy(), rtol=1e-4, atol=1e-5, err_msg=saved.path)
    start = keras.saving.load_model(tiny_run / "model.keras")
    moved = [w.path for w, s in zip(adapted.weights, start.weights)
             if w.path.endswith("moving_mean") and not np.allclose(w.numpy(), s.numpy(), atol=1e-3)]
    assert len(moved) == 6  # every batch-norm layer now holds the target's statistics
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["method_args"]["reestimate"] is True


@pytest.mark.parametrize("argv, message", [
    (["--method", "shot"], "--method shot adapts an existing model without source data: give --init"),
    (["--method", "tent", "--init", "nope.keras"], "--init 'nope.keras' is neither a run directory nor a .keras"),
    (["--class-names", "x.txt"], "--class-names names the classes of an --init model"),
    (["--method-arg", "tau"], "--method-arg 'tau': give NAME=VALUE"),
    (["--method-arg", "nope=1"], "--method-arg nope: --method adamatch has no such hyper-parameter"),
    (["--method-arg", "tau=high"], "--method-arg tau=high: expected a float"),
])
def test_bad_source_free_input(tmp_path, capsys, argv, message):
    assert main([*FAST, *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if argv[0] in ("--method-arg", "--class-names") or "--init" not in argv:
        assert not (tmp_path / "r").exists()  # refused before the run directory is written


def test_foreign_model_problems_are_named(tmp_path, capsys):
    _foreign_model(tmp_path / "nobn.keras", batch_norm=False)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "ten.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    (tmp_path / "junk.keras").write_text("not a model")
    unlabeled = tmp_path / "unlabeled.npz"
    np.savez(unlabeled, x=np.zeros((8, 32, 32, 3), np.uint8))
    cases = [
        (["--method", "tent", "--init", str(tmp_path / "nobn.keras"), "--class-names", str(tmp_path / "ten.txt")],
         "--method tent trains batch-normalisation layers, and the model has none"),
        (["--method", "shot", "--init", str(tmp_path / "nobn.keras"), "--class-names", str(tmp_path / "three.txt"),
          "--target", f"npz:{unlabeled}"], "outputs 10 classes but the class names list 3"),
        (["--method", "shot", "--init", str(tmp_path / "nobn.keras"), "--class-names", str(tmp_path / "three.txt")],
         "--target 'digits-m' has classes that differ"),
        (["--method", "shot", "--init", str(tmp_path / "junk.keras"), "--class-names", str(tmp_path / "ten.txt")],
         "is not a Keras model it can load"),
    ]
    for index, (argv, message) in enumerate(cases):
        assert main([*FAST, *argv, "--out", str(tmp_path / f"r{index}")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_source_given_to_a_source_free_method_is_named_unused(tiny_run, tmp_path, capsys):
    assert main([*FAST, "--method", "tent", "--init", str(tiny_run), "--source", "digits",
                 "--target", "digits-m", "--out", str(tmp_path / "r")]) == 0
    assert "--source 'digits' is not used by the source-free --method tent" in capsys.readouterr().err


def test_shot_labels_with_the_weights_of_its_last_clustering():
    """An image keeps its pseudo-label between clusterings while the trained weights move (as in
    the official code's per-interval labels); the next clustering takes the current weights."""
    from tfuda.validate.sample import TargetSample

    class Sample(TargetSample):
        def __init__(self, images):
            self.images = images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16, 3)).astype("uint8")
    model = build_model("cnn-small", 10, 16)
    shot = SHOT()
    shot.build(model)
    shot.recompute(model, Sample(images))
    batch = tf.constant(images[:32], tf.float32)
    labels = shot.pseudo_labels(batch).numpy()
    assert not any(v.trainable for v in shot.labeller.weights)
    for variable in model.trainable_variables:  # a large step of training
        variable.assign(variable + rng.normal(0, 0.5, variable.shape).astype("float32"))
    np.testing.assert_array_equal(shot.pseudo_labels(batch), labels)
    shot.recompute(model, Sample(images))
    for mine, theirs in zip(shot.labeller.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(shot.pseudo_labels(batch), labels)
