"""`TrainingModel`: a Keras model whose `train_step` runs any method, with weight decay and EMA."""

from __future__ import annotations

import keras
import tensorflow as tf

from pipelines.errors import UserError
from pipelines.feeds import FeedSpec, apply_views, training_progress
from tfuda.engine.distribute import replica, replica_seed
from tfuda.engine.ema import EMA
from tfuda.methods.base import Method


def l2_penalty(model: keras.Model) -> tf.Tensor:
    """0.5 * sum of squared conv/dense kernels (biases and batch norm are not decayed)."""
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    if not kernels:
        return tf.constant(0.0)
    return 0.5 * tf.add_n([tf.reduce_sum(tf.square(tf.cast(w, tf.float32))) for w in kernels])


class TrainingModel(keras.Model):
    """Trains `classifier` with `method`; `ema.average` is the model to evaluate and export.

    Args:
      classifier: images float32 `[B, S, S, 3]` (0..255) -> logits.
      method: the training method (its loss and views).
      total_steps: T, for the method's progress t / T.
      weight_decay: coefficient of `l2_penalty`, added to the method's loss.
      ema_decay: EMA decay (warmed up, see `tfuda.engine.ema`).
      feed_spec: given when the feed leaves augmentation to the device (`on_device=True`);
        the train step then makes the views.

    Compile with an optimizer (see `make_optimizer`) and `jit_compile`; `train_step` returns
    the method's logs plus `loss`, `losses/weight_decay` and `monitors/lr`, each float32 `[1]`
    (averaged over replicas by Keras).
    """

    def __init__(self, classifier: keras.Model, method: Method, *, total_steps: int,
                 weight_decay: float = 5e-4, ema_decay: float = 0.999,
                 feed_spec: FeedSpec | None = None, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.method = method
        self.total_steps = total_steps
        self.weight_decay = weight_decay
        self.feed_spec = feed_spec
        self.ema = EMA(classifier, ema_decay)  # before the method freezes layers of its choice
        method.average = self.ema.average
        method.build(classifier)
        if not classifier.trainable_variables:
            raise UserError(f"model '{classifier.name}' has no trainable weights for method {method.name}: "
                            "nothing would change. If it was loaded or built frozen, set model.trainable = True")
        self.ema_start = method.ema_start(total_steps)

    def compile(self, optimizer, **kwargs):
        """Keras `compile`, then builds the optimizer's slots (inside the caller's strategy scope,
        before any step: slot variables cannot be created lazily inside a distributed step)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.train_variables)

    def call(self, images, training=False):
        return self.classifier(images, training=training)

    def save(self, filepath, *args, **kwargs):
        """Saves the EMA classifier, the model a run evaluates and exports (so Keras'
        `ModelCheckpoint` writes that model)."""
        return self.ema.average.save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        """Saves the EMA classifier's weights (see `save`)."""
        return self.ema.average.save_weights(filepath, *args, **kwargs)

    @property
    def train_variables(self) -> list:
        variables = list(self.classifier.trainable_variables)
        for layer in self.method.extra_layers:
            variables += layer.trainable_variables
        return variables

    def step_inputs(self, batch: dict) -> dict:
        """The batch the method sees: on-device views (with `feed_spec.on_device`) and a seed of
        this replica's own.

        On replica r of N the views of each image are those of the global batch (see
        `apply_views`); the seed has the replica folded in, so the method's own draws differ.
        """
        if self.feed_spec is not None and self.feed_spec.on_device:
            batch = apply_views(batch, self.feed_spec, replica())
        return {**batch, "seed": replica_seed(batch["seed"])}

    def train_step(self, batch):
        step = tf.identity(self.optimizer.iterations)  # this step's 0-based index, before the update
        progress = training_progress(step, self.total_steps)
        batch = self.step_inputs(batch)
        variables = self.train_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, logs = self.method.loss(self.classifier, batch, progress)
            decay = l2_penalty(self.classifier)
            total = loss + self.weight_decay * decay
            # Gradients are summed over replicas: each replica's mean loss / R gives the global mean.
            scaled = self.optimizer.scale_loss(total / replicas)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        # One step counter: a step that loss scaling skipped (non-finite float16 gradients) leaves
        # `iterations` behind, while the loop, checkpoints and the feed count every step.
        self.optimizer.iterations.assign(step + 1)
        self.ema.update(step - self.ema_start)
        logs = {"loss": total, **logs, "losses/weight_decay": decay, "monitors/lr": self.optimizer.learning_rate}
        # Shape [1]: Keras reduces per-replica outputs of a multi-worker step along axis 0.
        return {key: tf.reshape(tf.cast(value, tf.float32), [1]) for key, value in logs.items()}


def make_optimizer(schedule: keras.optimizers.schedules.LearningRateSchedule | float, *,
                   mixed_precision: bool = False, momentum: float = 0.9,
                   nesterov: bool = True) -> keras.optimizers.Optimizer:
    """SGD with (Nesterov) momentum 0.9 following `schedule` (see `Method.learning_rate`).

    With `mixed_precision`, wrapped in a dynamic `LossScaleOptimizer`.
    """
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=momentum, nesterov=nesterov)
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
