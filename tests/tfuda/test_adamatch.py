import json

import numpy as np
import pytest
import tensorflow as tf

from pipelines.errors import UserError
from tfuda.methods.adamatch import (AdaMatch, AlignmentStatistics, align_distribution, interpolate_logits,
                                    relative_threshold, source_only_logits)
from tfuda.methods.base import warmup
from tfuda.models import build_model


def test_alignment_renormalises_and_moves_the_target_distribution():
    p_source = tf.constant([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])  # source mean: .45 .45 .1
    p_target = tf.constant([[0.6, 0.2, 0.2], [0.5, 0.3, 0.2]])  # target mean: .55 .25 .2
    aligned = align_distribution(p_target, tf.reduce_mean(p_source, 0), tf.reduce_mean(p_target, 0)).numpy()
    np.testing.assert_allclose(aligned.sum(axis=1), 1.0, rtol=1e-6)
    # Hand-computed: row 0 * (.45/.55, .45/.25, .1/.2) = (.4909, .36, .1) / .9509
    np.testing.assert_allclose(aligned[0], [0.5163, 0.3786, 0.1052], atol=1e-3)
    # Class 1 was under-predicted on the target relative to the source: it gains mass.
    assert (aligned[:, 1] > p_target.numpy()[:, 1]).all()
    assert (aligned[:, 2] < p_target.numpy()[:, 2]).all()


def test_running_statistics_follow_the_official_code_by_hand():
    stats = AlignmentStatistics(2, decay=0.5, window=2)
    np.testing.assert_allclose(stats.source_mean.numpy(), [0.5, 0.5])  # both start uniform
    source, target = stats.update(tf.constant([1.0, 0.0]), tf.constant([0.0, 1.0]))
    np.testing.assert_allclose(source, [0.75, 0.25])  # 0.5 * uniform + 0.5 * batch mean
    np.testing.assert_allclose(target, [0.25, 0.75])  # mean of (uniform, [0, 1])
    source, target = stats.update(tf.constant([1.0, 0.0]), tf.constant([0.2, 0.8]))
    np.testing.assert_allclose(source, [0.875, 0.125])
    np.testing.assert_allclose(target, [0.1, 0.9])  # the uniform start left the 2-batch window
    np.testing.assert_allclose(stats.target_means.numpy(), [[0.0, 1.0], [0.2, 0.8]])
    assert AlignmentStatistics.from_config(stats.get_config()).window == 2


def test_adamatch_aligns_with_batch_means_by_default_and_running_statistics_on_request():
    from tfuda.config import Config
    from tfuda.engine.run import complete_for_method

    model = build_model("cnn-small", 3, 8)
    running, batch = AdaMatch(alignment="running"), AdaMatch()
    running.build(model)
    batch.build(model)
    assert [layer.name for layer in running.extra_layers] == ["alignment_statistics"]
    assert batch.extra_layers == []
    p_x, p_u = tf.constant([[0.8, 0.1, 0.1]]), tf.constant([[0.2, 0.2, 0.6]])
    np.testing.assert_allclose(batch.class_distributions(p_x, p_u)[0], [0.8, 0.1, 0.1])
    source, _ = running.class_distributions(p_x, p_u)  # barely moves from uniform (decay 0.999)
    np.testing.assert_allclose(source, 0.999 / 3 + 0.001 * np.array([0.8, 0.1, 0.1]), rtol=1e-5)
    with pytest.raises(UserError, match="alignment=mean: choose running, batch, prior"):
        complete_for_method(Config(method_args={"alignment": "mean"}).validate(), set())


def test_the_refinement_stage_is_the_default_in_domain_adaptation_only():
    from tfuda.config import Config
    from tfuda.engine.run import complete_for_method

    def refine(**fields):
        return complete_for_method(Config(**fields).validate(), set()).method_args["refine"]

    assert AdaMatch().refine == 0.25
    assert refine() == 0.25
    assert refine(setting="ssl", labeled_per_class=4) == 0.0
    assert refine(setting="ssl", labeled_per_class=4, method_args={"refine": "0.5"}) == 0.5
    assert refine(method_args={"refine": "0"}) == 0.0


def test_the_online_prior_converges_to_the_batch_em_estimate():
    from tfuda.methods.target_prior import TargetPrior
    from tfuda.validate.prior import estimate_prior

    # Calibrated posteriors of a 3-class target whose prior (0.7, 0.2, 0.1) differs from the
    # source's (uniform); the posteriors' mean (0.5, 0.3, 0.2) is not the prior.
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=600, p=[0.7, 0.2, 0.1])
    probs = np.full((600, 3), 0.25) + 0.25 * np.eye(3)[labels]
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    expected = estimate_prior(probs)
    prior = TargetPrior(3, decay=0.0)  # decay 0, full batch: each update is one batch EM step
    for _ in range(300):
        estimate = prior.update(tf.constant([1 / 3] * 3), tf.constant(probs)).numpy()
    np.testing.assert_allclose(estimate, expected, atol=1e-3)
    assert abs(estimate[0] - probs[:, 0].mean()) > 0.1
    # With decay, a stream of batches gets there too.
    streamed = TargetPrior(3, decay=0.9)
    for step in range(2000):
        rows = probs[(step * 30) % 600:(step * 30) % 600 + 30]
        estimate = streamed.update(tf.constant([1 / 3] * 3), tf.constant(rows)).numpy()
    np.testing.assert_allclose(estimate, expected, atol=0.05)
    assert TargetPrior.from_config(streamed.get_config()).decay == 0.9


def test_prior_alignment_pulls_target_predictions_to_the_estimated_prior_not_the_source_mean():
    model = build_model("cnn-small", 3, 8)
    method = AdaMatch(alignment="prior")
    method.build(model)
    assert [layer.name for layer in method.extra_layers] == ["target_prior"]
    method.statistics.target_prior.assign([0.6, 0.3, 0.1])
    p_x, p_u = tf.constant([[1 / 3] * 3]), tf.constant([[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    prior, target_mean = method.class_distributions(p_x, p_u)
    # One EM step away from the estimate it had, not the source's uniform mean.
    assert prior.numpy()[0] > 0.55 and prior.numpy()[2] < 0.15
    np.testing.assert_allclose(target_mean, [0.25, 0.25, 0.5])


def test_realign_switches_from_the_source_mean_to_the_frozen_estimate():
    from tfuda.validate.prior import estimate_prior

    model = build_model("cnn-small", 3, 8)
    method = AdaMatch(realign=0.5)
    method.build(model)
    prior = method.frozen_prior
    source_mean = tf.constant([0.5, 0.3, 0.2])
    np.testing.assert_allclose(method.realigned(source_mean), source_mean)  # before the estimate
    np.testing.assert_allclose(prior.source_prior.numpy(), 0.99 / 3 + 0.01 * source_mean.numpy(), rtol=1e-5)
    # Target posteriors of a target whose prior is (0.7, 0.2, 0.1), estimated against the
    # tracked source prior: `estimate_prior`'s EM.
    labels = np.random.default_rng(0).choice(3, size=600, p=[0.7, 0.2, 0.1])
    probs = np.full((600, 3), 0.25) + 0.25 * np.eye(3)[labels]
    probs /= probs.sum(1, keepdims=True)
    prior.source_prior.assign([0.4, 0.3, 0.3])
    estimate = prior.estimate(probs, batch_size=8)
    np.testing.assert_allclose(estimate, estimate_prior(probs, np.array([0.4, 0.3, 0.3])), atol=1e-6)
    assert estimate[0] > 0.6 and float(prior.estimated.numpy()) == 1.0
    np.testing.assert_allclose(method.realigned(source_mean), estimate, rtol=1e-5)
    np.testing.assert_allclose(prior.source_prior.numpy(), [0.4, 0.3, 0.3])  # no longer tracked
    with pytest.raises(UserError, match="realign"):
        AdaMatch(alignment="prior", realign=0.2)
    with pytest.raises(UserError, match="realign=1.0"):
        AdaMatch(realign=1.0)


def test_a_realigned_run_estimates_the_prior_from_its_ema_model_and_checkpoints_it(tmp_path):
    from tests.conftest import TINY_RUN_ARGS
    from tfuda.train import main

    run = tmp_path / "realign"
    assert main([*TINY_RUN_ARGS, "--method-arg", "realign=0.5", "--no-report", "--out", str(run)]) == 0
    checkpoints = sorted(run.glob("checkpoints/ckpt-*.index"))
    saved = {}
    for index in checkpoints:  # step 3 (before the estimate at step 3) and step 6 (after)
        path = str(index)[:-len(".index")]
        names = [name for name, _ in tf.train.list_variables(path) if "method_0" in name]
        saved[path] = {name.split("/")[-3]: tf.train.load_variable(path, name) for name in names}
    first, last = (saved[k] for k in sorted(saved, key=lambda k: int(k.rsplit("-", 1)[1])))
    assert first["estimated"] == 0.0 and last["estimated"] == 1.0
    np.testing.assert_allclose(first["target_prior"], 0.1)
    assert abs(last["target_prior"].sum() - 1.0) < 1e-5 and not np.allclose(last["target_prior"], 0.1)
    estimated, source = (last[name].astype(np.float64) / last[name].sum() for name in ("target_prior", "source_prior"))
    distance = np.abs(estimated - source)
    assert json.loads((run / "metrics.json").read_text())["method_report"] == [
        f"realign: the target's class proportions estimated at step 3 are L1 {distance.sum():.3f} from the source's; "
        "the run aligned to them from there on",
        "refinement stage: steps 5-6 on the target alone, labeled by the EMA model (--method-arg refine=0 turns it "
        "off)"]  # the default refine=0.25: the last quarter of 6 steps


def test_the_running_statistics_are_checkpointed(tmp_path):
    from tests.conftest import TINY_RUN_ARGS
    from tfuda.train import main

    run = tmp_path / "running"
    assert main([*TINY_RUN_ARGS, "--method-arg", "alignment=running", "--no-report", "--out", str(run)]) == 0
    checkpoint = tf.train.latest_checkpoint(str(run / "checkpoints"))
    saved = {name: shape for name, shape in tf.train.list_variables(checkpoint)}
    means = [name for name in saved if "method_0" in name and "target_means" in name]
    assert len(means) == 1 and saved[means[0]] == [128, 10]
    values = tf.train.load_variable(checkpoint, means[0])
    assert not np.allclose(values[-1], 0.1)  # the last 6 rows hold the 6 steps' target means
    np.testing.assert_allclose(values[:-6], 0.1)


def test_threshold_is_relative_to_source_confidence():
    confident = tf.constant([[0.9, 0.1], [0.7, 0.3]])
    unsure = tf.constant([[0.6, 0.4], [0.5, 0.5]])
    assert float(relative_threshold(confident, 0.9)) == pytest.approx(0.9 * 0.8)
    assert float(relative_threshold(unsure, 0.9)) == pytest.approx(0.9 * 0.55)


def test_warmup_schedule_endpoints():
    values = [float(warmup(tf.constant(p))) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0], abs=1e-6)


def test_logit_interpolation_stays_between_the_two():
    a = tf.random.normal([16, 10], seed=1)
    b = tf.random.normal([16, 10], seed=2)
    mixed = interpolate_logits(a, b, tf.constant([1, 2], tf.int64)).numpy()
    low, high = np.minimum(a, b), np.maximum(a, b)
    assert ((mixed >= low - 1e-6) & (mixed <= high + 1e-6)).all()
    assert not np.allclose(mixed, a) and not np.allclose(mixed, b)


def test_source_only_pass_leaves_batch_norm_statistics_untouched_but_has_gradients():
    model = build_model("cnn-small", 10, 16)
    images = tf.random.uniform([4, 16, 16, 3], 0, 255, seed=0)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        logits = source_only_logits(model, images)
        loss = tf.reduce_sum(logits)
    grads = tape.gradient(loss, model.trainable_variables)
    for b, v in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())
    assert all(g is not None for g in grads)
    # ...while a normal training-mode call does update them, and gives the same logits.
    np.testing.assert_allclose(model(images, training=True), logits, rtol=1e-4, atol=1e-4)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.non_trainable_variables))


def test_adamatch_loss_logs_and_masks():
    model = build_model("cnn-small", 3, 8)
    rng = np.random.default_rng(0)
    batch = {
        "seed": tf.constant([0, 1], tf.int64),
        "source": {"labels": tf.constant([0, 1]), "weak": rng.uniform(0, 255, (2, 8, 8, 3)).astype("f4"),
                   "strong": rng.uniform(0, 255, (2, 8, 8, 3)).astype("f4")},
        "target": {"labels": tf.constant([0, 1, -1, 2, 0, 1], tf.int64),
                   "weak": rng.uniform(0, 255, (6, 8, 8, 3)).astype("f4"),
                   "strong": rng.uniform(0, 255, (6, 8, 8, 3)).astype("f4")},
    }
    method = AdaMatch()
    method.monitor_target_labels = True
    loss, logs = method.loss(model, batch, tf.constant(0.5))
    assert np.isfinite(float(loss))
    assert {"losses/source", "losses/target", "monitors/mask_rate", "monitors/threshold",
            "monitors/target_weight", "monitors/pseudo_label_acc"} <= set(logs)
    assert float(logs["monitors/target_weight"]) == pytest.approx(1.0)
    assert 0.0 <= float(logs["monitors/mask_rate"]) <= 1.0
    assert float(loss) == pytest.approx(float(logs["losses/source"]) + float(logs["losses/target"]), rel=1e-5)
    assert "losses/entropy" not in logs

    # The conditional-entropy term: w x the mean entropy of the weak target view, warmed up.
    # Same model state and seed, so the other terms are those of the call above.
    weighted = AdaMatch(entropy=0.5)
    loss_w, logs_w = weighted.loss(model, batch, tf.constant(0.5))
    entropy = float(logs_w["losses/entropy"])
    assert 0.0 < entropy <= np.log(3) + 1e-6
    assert float(loss_w) == pytest.approx(float(logs_w["losses/source"]) + float(logs_w["losses/target"])
                                          + 0.5 * entropy, rel=1e-5)


def test_the_virtual_adversarial_direction_moves_the_prediction_more_than_random_ones():
    from tfuda.methods.vat import adversarial_direction, kl_divergence

    # A linear classifier of moderate confidence whose logits move fastest along one direction.
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(48, 4)) * 0.1 + np.outer(rng.normal(size=48), [1, -1, 0, 0]) * 0.3,
                         tf.float32)
    logits_fn = lambda x: tf.matmul(tf.reshape(x / 127.5 - 1.0, [-1, 48]), kernel)  # noqa: E731
    images = tf.constant(rng.uniform(0, 255, size=(6, 4, 4, 3)), tf.float32)
    p = tf.nn.softmax(logits_fn(images))
    direction = adversarial_direction(logits_fn, images, p, tf.constant([1, 2], tf.int64))
    norms = tf.sqrt(tf.reduce_sum(tf.square(direction), axis=[1, 2, 3])).numpy()
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)
    adversarial = kl_divergence(p, logits_fn(images + 20.0 * direction)).numpy()
    random = []
    for k in range(5):
        d = tf.random.stateless_normal(images.shape, [k, 9])
        d /= tf.sqrt(tf.reduce_sum(tf.square(d), axis=[1, 2, 3], keepdims=True))
        random.append(kl_divergence(p, logits_fn(images + 20.0 * d)).numpy())
    assert (adversarial > 5 * np.mean(random, axis=0)).all()


@pytest.mark.parametrize("option", ["vat", "vmt"])
def test_a_regulariser_adds_its_weighted_loss_to_adamatch(option):
    model = build_model("cnn-small", 3, 16)
    rng = np.random.default_rng(0)
    images = lambda n: tf.constant(rng.uniform(0, 255, size=(n, 16, 16, 3)), tf.float32)  # noqa: E731
    batch = {"source": {"weak": images(4), "strong": images(4), "labels": tf.constant([0, 1, 2, 0])},
             "target": {"weak": images(6), "strong": images(6), "labels": tf.constant([-1] * 6)},
             "seed": tf.constant([3, 4], tf.int64)}
    # At the end of a run without the refinement stage (the target loss fully warmed up).
    off, _ = AdaMatch(refine=0.0).loss(model, batch, tf.constant(1.0))
    on, logs = AdaMatch(refine=0.0, **{option: 2.0}).loss(model, batch, tf.constant(1.0))
    assert float(logs[f"losses/{option}"]) > 0
    np.testing.assert_allclose(float(on - off), 2.0 * float(logs[f"losses/{option}"]), rtol=1e-4)
    with pytest.raises(UserError, match=option):
        AdaMatch(**{option: -1.0})


def test_virtual_mixup_is_zero_for_a_linear_model_and_not_for_a_nonlinear_one():
    from tfuda.methods.vmt import mix, virtual_mixup_loss

    rng = np.random.default_rng(1)
    kernel = tf.constant(rng.normal(size=(48, 4)), tf.float32)
    linear = lambda x: tf.matmul(tf.reshape(x / 127.5 - 1.0, [-1, 48]), kernel) + 0.3  # noqa: E731
    bent = lambda x: tf.nn.relu(linear(x)) ** 2  # noqa: E731
    images = tf.constant(rng.uniform(0, 255, size=(8, 4, 4, 3)), tf.float32)
    seed = tf.constant([5, 6], tf.int64)
    # The logits are mixed with the images' partners and proportions: exact for an affine model.
    assert float(virtual_mixup_loss(linear, images, seed)) < 1e-5
    assert float(virtual_mixup_loss(bent, images, seed)) > 1e-2
    mixed, _ = mix(images, linear(images), seed)
    low, high = tf.reduce_min(images, axis=0), tf.reduce_max(images, axis=0)
    assert bool(tf.reduce_all((mixed >= low - 1e-3) & (mixed <= high + 1e-3)))
    assert not np.allclose(mixed.numpy(), images.numpy())


def test_the_refinement_stage_trains_on_the_teachers_labels_of_the_target_alone():
    import keras

    model = build_model("cnn-small", 3, 16)
    teacher = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(3, kernel_initializer="zeros",
                                                   bias_initializer=keras.initializers.Constant([0.0, 0.0, 9.0]))])
    method = AdaMatch(refine=0.5)
    method.average = teacher  # as the trainer sets it: the EMA model
    method.build(model)
    method.monitor_target_labels = True
    rng = np.random.default_rng(0)
    images = lambda n: tf.constant(rng.uniform(0, 255, size=(n, 16, 16, 3)), tf.float32)  # noqa: E731
    batch = {"source": {"weak": images(4), "strong": images(4), "labels": tf.constant([0, 1, 2, 0])},
             "target": {"weak": images(6), "strong": images(6), "labels": tf.constant([2] * 6, tf.int64)},
             "seed": tf.constant([3, 4], tf.int64)}
    _, adapting = method.loss(model, batch, tf.constant(0.25))
    _, refining = method.loss(model, batch, tf.constant(0.75))
    assert float(adapting["losses/source"]) > 0 and float(refining["losses/source"]) == 0.0
    # Every teacher label is class 2, confident: all pass the threshold and match these labels.
    assert float(refining["monitors/mask_rate"]) == 1.0 and float(refining["monitors/pseudo_label_acc"]) == 1.0
    assert float(refining["losses/target"]) > 0
    phases = method.view_phases(100)
    assert phases.switch == 0.5 and ("source", "strong") in phases.early and not phases.late
    # refine_source keeps the labeled source loss, and so its views, in the stage.
    anchored = AdaMatch(refine=0.5, refine_source=1.0)
    anchored.average = teacher
    anchored.build(model)
    _, refining = anchored.loss(model, batch, tf.constant(0.75))
    assert float(refining["losses/source"]) > 0 and float(refining["losses/target"]) > 0
    assert anchored.view_phases(100) is None
    assert anchored.report(8) == ["refinement stage: steps 4-8 on the target and the labeled source (weight 1), the "
                                  "target labeled by the EMA model (--method-arg refine=0 turns it off)"]
    assert method.report(8) == ["refinement stage: steps 4-8 on the target alone, labeled by the EMA model "
                                "(--method-arg refine=0 turns it off)"]
    with pytest.raises(UserError, match="refine_source"):
        AdaMatch(refine=0.0, refine_source=1.0)
    # refine_align aligns the teacher's labels to the source's mean prediction (uniform until the
    # adaptation stage tracks one): a teacher sure of class 2 everywhere is flattened below tau.
    aligning = AdaMatch(refine=0.5, refine_align=True)
    aligning.average = teacher
    aligning.build(model)
    aligning.monitor_target_labels = True
    _, refining = aligning.loss(model, batch, tf.constant(0.75))
    assert float(refining["monitors/mask_rate"]) == 0.0
    assert aligning.callbacks(None, None, None) == [] and aligning.view_phases(100) is not None
    with pytest.raises(UserError, match="refine_align"):
        AdaMatch(refine=0.0, refine_align=True)


def test_a_frozen_teacher_is_the_ema_model_of_the_stages_first_step():
    import keras

    from tfuda.engine.ema import EMA
    from tfuda.methods.adamatch import FreezeTeacher

    model = build_model("cnn-small", 3, 16)
    ema = EMA(model)
    method = AdaMatch(refine=0.5, refine_teacher="frozen")
    method.average = ema.average
    method.build(model)
    assert method.teacher in method.extra_layers and not method.teacher.trainable_weights
    (freeze,) = method.callbacks(model, None, None)
    assert isinstance(freeze, FreezeTeacher)
    trainer = keras.Model()  # stands for the TrainingModel: its `total_steps` and `ema`
    trainer.total_steps, trainer.ema = 10, ema
    freeze.set_model(trainer)
    freeze.on_train_begin()
    kernel = lambda m: m.weights[0].numpy().copy()  # noqa: E731
    for step in range(10):
        ema.average.weights[0].assign(ema.average.weights[0] + 1.0)  # the EMA moves every step
        freeze.on_train_batch_begin(step)
        if step == 4:
            assert not np.allclose(kernel(method.teacher), kernel(ema.average))
        if step == 5:
            at_start = kernel(ema.average)
    np.testing.assert_array_equal(kernel(method.teacher), at_start)
    assert not np.allclose(kernel(method.teacher), kernel(ema.average))
    with pytest.raises(UserError, match="refine_teacher"):
        AdaMatch(refine=0.0, refine_teacher="frozen")
    with pytest.raises(UserError, match="refine_teacher"):
        AdaMatch(refine=0.5, refine_teacher="student")


def test_refine_shifted_refines_only_a_target_whose_proportions_moved():
    import keras

    model = build_model("cnn-small", 3, 16)
    teacher = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(3, kernel_initializer="zeros")])
    rng = np.random.default_rng(0)
    images = lambda n: tf.constant(rng.uniform(0, 255, size=(n, 16, 16, 3)), tf.float32)  # noqa: E731
    batch = {"source": {"weak": images(4), "strong": images(4), "labels": tf.constant([0, 1, 2, 0])},
             "target": {"weak": images(6), "strong": images(6), "labels": tf.constant([2] * 6, tf.int64)},
             "seed": tf.constant([3, 4], tf.int64)}

    def posteriors(shares, confidence):  # a model right on `confidence` of a target with these shares
        labels = np.random.default_rng(1).choice(3, size=900, p=shares)
        probs = np.where(np.eye(3)[labels] > 0, confidence, (1 - confidence) / 2)
        return probs

    stages = {}
    for name, shares, confidence in [("balanced", [1 / 3] * 3, 0.6), ("shifted", [0.8, 0.1, 0.1], 0.95),
                                     ("unsure", [0.5, 0.3, 0.2], 0.6), ("sure, balanced", [1 / 3] * 3, 0.995)]:
        method = AdaMatch(refine=0.5, refine_shifted=True)
        method.average = teacher
        method.build(model)
        assert method.view_phases(100) is None  # the source views stay: the stage may not run
        assert method.report(100) == []  # nothing decided before the estimate
        method.frozen_prior.estimate(posteriors(shares, confidence), batch_size=8)
        _, logs = method.loss(model, batch, tf.constant(0.75))
        (said,) = method.report(100)  # the run's last lines say what the test decided
        assert said.startswith("refinement stage: ") and "are L1 " in said
        stages[name] = float(logs["monitors/refining"]), float(logs["losses/source"]) > 0, said.split(":")[1].strip()
    # A confident model whose predicted shares moved far from the source's (uniform) refines on the
    # target alone; a balanced target, or a model whose errors could explain the move, keeps adapting,
    # as does a near-perfect model on a balanced target, whose 900 images' shares differ from the
    # source's by sampling alone (L1 ~0.04, beyond its errors' 0.01).
    assert stages == {"balanced": (0.0, True, "not run"), "shifted": (1.0, False, "ran from step 50"),
                      "unsure": (0.0, True, "not run"), "sure, balanced": (0.0, True, "not run")}
    with pytest.raises(UserError, match="refine_shifted"):
        AdaMatch(refine=0.0, refine_shifted=True)
    with pytest.raises(UserError, match="refine_shifted"):
        AdaMatch(refine=0.25, realign=0.5, refine_shifted=True)


def test_a_refined_run_with_a_frozen_teacher_and_the_shift_test_completes(tmp_path):
    import json

    from tests.conftest import TINY_RUN_ARGS
    from tfuda.train import main

    run = tmp_path / "refine"
    assert main([*TINY_RUN_ARGS, "--method-arg", "refine=0.5", "--method-arg", "refine_shifted=true",
                 "--method-arg", "refine_teacher=frozen", "--no-report", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["method_args"]["refine"] == 0.5
    assert metrics["config"]["method_args"]["refine_teacher"] == "frozen"
    saved = tf.train.latest_checkpoint(str(run / "checkpoints"))
    estimated = [name for name, _ in tf.train.list_variables(saved) if "estimated" in name]
    assert estimated and tf.train.load_variable(saved, estimated[0]) == 1.0  # at the stage's start
    shifted = [name for name, _ in tf.train.list_variables(saved) if "shifted" in name]
    decided = "ran from step 3" if tf.train.load_variable(saved, shifted[0]) == 1.0 else "not run"
    (said,) = metrics["method_report"]
    assert said.startswith(f"refinement stage: {decided}: the target's class proportions estimated at step 3 ")
