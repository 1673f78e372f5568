"""Runs in its own process: two logical CPU devices must be configured before TF initialises.

Prints one JSON line with the checks' results, for tests/tfuda/test_distribute.py.
usage: python two_replicas.py {step,stats,views,adamatch,nan} OUT_DIR
(one strategy per process: two MirroredStrategy objects in one process share collective keys)
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.feeds import FeedSpec, make_feed  # noqa: E402
from pipelines.sources import open_source  # noqa: E402
from tfuda.engine.distribute import make_strategy, split_for_replicas  # noqa: E402
from tfuda.engine.trainer import TrainingModel, make_optimizer  # noqa: E402
from tfuda.methods import SourceOnly  # noqa: E402
from tfuda.models import build_model  # noqa: E402
from tfuda.train import main  # noqa: E402

mode, out = sys.argv[1], sys.argv[2]
results = {}


def frozen_bn_model(strategy):
    """cnn-small built under `strategy` with batch norm frozen, so examples are independent."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("cnn-small", 10, 16)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model


def one_step(strategy, batch_size):
    """Weights after one source-only step on the same global batch (batch norm frozen)."""
    model = frozen_bn_model(strategy)
    with strategy.scope():
        adapter = TrainingModel(model, SourceOnly(), total_steps=10, weight_decay=5e-4)
        adapter.compile(optimizer=make_optimizer(0.05))
    spec = FeedSpec(batch_size, 1, 16, ("weak",), (), seed=3)
    feed = split_for_replicas(make_feed(open_source("digits"), None, spec), strategy)
    adapter.make_train_function()
    logs = adapter.train_function(iter(feed))
    return [w.numpy() for w in model.trainable_weights], float(logs["loss"][0])


if mode == "step":
    mirrored = make_strategy("mirrored")
    results["replicas"] = mirrored.num_replicas_in_sync
    single_weights, single_loss = one_step(tf.distribute.get_strategy(), 8)
    double_weights, double_loss = one_step(mirrored, 8)
    results["max_weight_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(single_weights, double_weights))
    results["loss_diff"] = abs(single_loss - double_loss)
elif mode == "stats":
    # AdaMatch's batch statistics are per replica: on 2 replicas its logs must equal the mean of
    # the logs of each half-batch computed alone (batch norm frozen, so examples are independent;
    # alignment by batch means, the default).
    from tfuda.methods import AdaMatch

    mirrored = make_strategy("mirrored")
    model = frozen_bn_model(mirrored)
    method = AdaMatch(alignment="batch")
    spec = FeedSpec(8, 3, 16, AdaMatch.source_views, AdaMatch.target_views, seed=5)

    def feed():  # a new dataset each time: a second iterator over one dataset reshuffles
        return make_feed(open_source("digits"), open_source("digits-m"), spec)

    batch = next(iter(feed()))
    progress = tf.constant(0.7)
    per_replica = mirrored.run(lambda b: method.loss(model, b, progress)[1],
                               args=(next(iter(split_for_replicas(feed(), mirrored))),))
    distributed = {k: float(mirrored.reduce("MEAN", v, axis=None)) for k, v in per_replica.items()}

    def half(b, i):
        return {k: (v if k == "seed" else tf.nest.map_structure(lambda t: t[i * (len(t) // 2):(i + 1) * (len(t) // 2)], v))
                for k, v in b.items()}

    halves = [method.loss(model, half(batch, i), progress)[1] for i in range(2)]
    whole = method.loss(model, batch, progress)[1]
    results["max_diff_vs_per_replica"] = max(
        abs(distributed[k] - (float(halves[0][k]) + float(halves[1][k])) / 2) for k in distributed)
    results["mask_rate_whole_batch"] = float(whole["monitors/mask_rate"])
    results["mask_rate_two_replicas"] = distributed["monitors/mask_rate"]
    # The running alignment statistics: each replica updates from its own means, the variables
    # keep their average (replica r sees the class distribution (r, 1 - r)).
    from tfuda.methods.adamatch import AlignmentStatistics

    with mirrored.scope():
        stats = AlignmentStatistics(2, decay=0.5, window=2)

    def update():
        r = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
        return stats.update(tf.stack([r, 1.0 - r]), tf.stack([r, 1.0 - r]))

    seen = mirrored.experimental_local_results(mirrored.run(tf.function(update))[0])
    results["running_seen_per_replica"] = [t.numpy().tolist() for t in seen]
    results["running_source_mean"] = stats.source_mean.numpy().tolist()
    results["running_target_last"] = stats.target_means.numpy()[-1].tolist()
elif mode == "views":
    # --augment-on device on 2 replicas: each replica makes the views of its half of the global
    # batch inside the train step; they must equal the views one replica makes of the whole batch.
    from tfuda.methods import AdaMatch

    mirrored = make_strategy("mirrored")
    spec = FeedSpec(8, 3, 16, AdaMatch.source_views, AdaMatch.target_views, seed=5, on_device=True)
    with mirrored.scope():
        adapter = TrainingModel(frozen_bn_model(mirrored), AdaMatch(), total_steps=10, feed_spec=spec)

    def feed():
        return make_feed(open_source("digits"), open_source("digits-m"), spec)

    whole = adapter.step_inputs(next(iter(feed())))
    per_replica = mirrored.run(tf.function(adapter.step_inputs), args=(next(iter(split_for_replicas(feed(), mirrored))),))
    local = mirrored.experimental_local_results(per_replica)
    diffs = {}
    for part, views in (("source", AdaMatch.source_views), ("target", AdaMatch.target_views)):
        for view in views:
            joined = np.concatenate([r[part][view].numpy() for r in local])
            diffs[f"{part}/{view}"] = float(np.abs(joined - whole[part][view].numpy()).max())
    results["max_view_diff"] = max(diffs.values())
    halves_identical = [np.array_equal(local[0][p][v].numpy(), local[1][p][v].numpy())
                        for p, v in (("source", "strong"), ("target", "strong"))]
    results["replica_views_identical"] = any(halves_identical)
    results["replica_seeds"] = [r["seed"].numpy().tolist() for r in local]
elif mode == "adamatch":
    results["exit"] = main(["--strategy", "mirrored", "--steps", "3", "--batch-size", "4", "--eval-every", "3",
                            "--checkpoint-every", "3", "--no-report", "--out", out])
else:  # a NaN from step 3 on, on the distributed path
    from tfuda.methods.adamatch import AdaMatch

    original = AdaMatch.loss

    def poisoned(self, model, batch, progress):
        loss, logs = original(self, model, batch, progress)
        return tf.where(progress >= 0.5, np.nan, loss), logs

    AdaMatch.loss = poisoned
    results["exit"] = main(["--strategy", "mirrored", "--steps", "4", "--batch-size", "4", "--eval-every", "100",
                            "--checkpoint-every", "1", "--no-report", "--out", out])
print("RESULTS " + json.dumps(results))
