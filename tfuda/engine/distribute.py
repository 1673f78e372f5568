"""`tf.distribute` strategies by `--strategy` name, and who writes the run directory.

  * `default`: one device (TensorFlow's default strategy).
  * `mirrored`: `MirroredStrategy` over the local GPUs (or logical CPU devices in tests).
  * `multiworker`: `MultiWorkerMirroredStrategy` across machines, configured the standard way by
    the `TF_CONFIG` environment variable; the chief (task `chief`, else `worker` 0) writes the
    run directory, the other workers write to a temporary directory that is removed at the end.
  * `tpu`: `TPUStrategy` on an attached TPU (kept minimal; not testable without one).

Batches: `--batch-size` is per replica; the global batch is that times the number of replicas.
Each global batch is split row-wise into per-replica slices, so N replicas see exactly the
images one replica would see with the global batch.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from pipelines.errors import UserError
from tfuda.config import STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the strategy; call before any other TensorFlow op of the process (multiworker)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU") and len(tf.config.list_logical_devices("CPU")) > 1:
            return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("--strategy multiworker needs the TF_CONFIG environment variable "
                            "(cluster addresses and this task's type/index); see README 'Scale out'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as err:
            raise UserError(f"--strategy tpu: no TPU found ({err})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown --strategy '{name}'; choose from {', '.join(STRATEGIES)}")


def _tf_config() -> dict:
    config = os.environ.get("TF_CONFIG")
    if not config:
        return {}
    try:
        return json.loads(config)
    except ValueError:
        raise UserError("TF_CONFIG is not valid JSON") from None


def task() -> tuple[str, int] | None:
    """`(type, index)` of this process's task in TF_CONFIG, e.g. `("worker", 1)`; None without it."""
    parsed = _tf_config()
    if not parsed:
        return None
    spec = parsed.get("task", {})
    return spec.get("type", "worker"), int(spec.get("index", 0))


def is_chief() -> bool:
    """True unless TF_CONFIG names this task as a non-chief worker."""
    this = task()
    if this is None:
        return True
    kind, index = this
    if kind == "chief":
        return True
    has_chief = bool(_tf_config().get("cluster", {}).get("chief"))
    return kind == "worker" and index == 0 and not has_chief


def replica() -> tuple[tf.Tensor | int, int]:
    """`(index, count)` of the replica running the caller; `(0, 1)` outside a strategy."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """Folds the replica index into a step's seed (unchanged on one replica).

    Random draws a method makes inside the step (AdaMatch's logit interpolation) then differ
    between replicas instead of repeating the same numbers on every replica's rows.
    """
    index, count = replica()
    if count == 1:
        return seed
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int32), alg=tf.random.Algorithm.PHILOX)


def split_for_replicas(feed: tf.data.Dataset, strategy: tf.distribute.Strategy) -> tf.distribute.DistributedDataset:
    """Distributes a feed of *global* batches: replica r gets rows [r*n/R, (r+1)*n/R) of each part.

    Non-batch entries (the step's `seed`) are given to every replica unchanged; the train step
    makes per-replica draws from it with `replica()` (augmentation: the global batch's draws,
    sliced) and `replica_seed` (the method's own draws).
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return feed

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def slices(batch):
            def take(index):
                def rows(t):
                    size = tf.shape(t)[0] // replicas
                    return t[(first + index) * size:(first + index + 1) * size]
                return {key: (value if key == "seed" else tf.nest.map_structure(rows, value))
                        for key, value in batch.items()}
            parts = [take(i) for i in range(local)]
            return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda *t: tf.stack(t), *parts))

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return feed.flat_map(slices).with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)
