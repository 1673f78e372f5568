"""TENT (Wang et al., "Tent: Fully Test-time Adaptation by Entropy Minimization", ICLR 2021;
https://arxiv.org/abs/2006.10726): adapt a trained classifier to the target domain from target
images alone, by minimising the entropy of its predictions.

Only the batch-normalisation scale and offset (gamma, beta) are trained; every other weight is
frozen. Batch norm runs in training mode, so it normalises with the target batch's statistics
(and its moving statistics drift to the target's, momentum as in the model). Per step, with
target images u (B of them, the weak view) and p = softmax(f(u)):

  L = (1 / B) * sum_i H(p_i),     H(p) = -sum_k p_k log p_k.

The paper takes one step per test batch, with a small learning rate (SGD 0.00025 / Adam 0.001),
and predicts each batch with the model *before* that batch's update. tfuda adapts offline: it
trains for `--steps` steps (the budget: TENT degrades when run long, see the README), then
evaluates and exports the adapted weights (EMA) — every prediction tfuda reports or exports is
made *after* adaptation — with batch-norm statistics re-estimated on the target
(`reestimate`, on by default; `tfuda.engine.batchnorm`): TENT normalises with target batch
statistics, while the moving statistics trail them (at momentum 0.999, 74% source after 300
steps) and the weight EMA averages them again. `episode` resets the trained
parameters, batch-norm statistics and their optimizer state to the initial model every
`episode` steps (0: never), the offline counterpart of TENT's episodic mode.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from pipelines.errors import UserError
from tfuda.methods.base import Logs, SourceFreeMethod, pseudo_label_monitors
from tfuda.models.common import batch_norm_layers, leaf_layers
from tfuda.validate.entropy import entropies


class TENT(SourceFreeMethod):
    """Entropy minimisation on batch-norm affine parameters.

    Args:
      episode: steps between resets to the initial model (0: never).
      reestimate: evaluate and export with batch-norm statistics re-estimated on the target.
    """

    name = "tent"
    default_lr = 0.001

    def __init__(self, episode: int = 0, reestimate: bool = True):
        if episode < 0:
            raise UserError(f"--method-arg episode={episode}: give 0 (never reset) or a number of steps")
        self.episode, self.reestimate = episode, reestimate

    @property
    def reestimates_batch_norm(self) -> bool:
        return self.reestimate

    def build(self, model: keras.Model) -> None:
        """Freezes every layer but batch normalisation (whose gamma/beta stay trainable)."""
        norms = batch_norm_layers(model)
        if not norms:
            raise UserError("--method tent trains batch-normalisation layers, and the model has none: "
                            "use --method shot, or a model with BatchNormalization")
        for layer in leaf_layers(model):
            layer.trainable = isinstance(layer, keras.layers.BatchNormalization)
        self.norm_variables = [v for layer in norms for v in layer.weights]
        self.initial = [v.numpy() for v in self.norm_variables]  # the --init model's, before any resume

    def loss(self, model, batch, progress) -> tuple[tf.Tensor, Logs]:
        tgt = batch["target"]
        logits = model(tgt["weak"], training=True)
        loss = tf.reduce_mean(entropies(tf.nn.softmax(tf.cast(logits, tf.float32))))
        logs = {"losses/entropy": loss}
        if self.monitor_target_labels:
            labels = tf.argmax(logits, axis=1)
            logs.update(pseudo_label_monitors(tgt["labels"], labels, tf.ones_like(labels, tf.float32)))
        return loss, logs

    def callbacks(self, classifier, target, spec) -> list[keras.callbacks.Callback]:
        return [EpisodicReset(self.norm_variables, self.initial, self.episode)] if self.episode else []


class EpisodicReset(keras.callbacks.Callback):
    """Every `episode` steps, puts `variables` back to `initial` and zeroes their momentum."""

    def __init__(self, variables: list, initial: list, episode: int):
        super().__init__()
        self.variables, self.initial, self.episode = variables, initial, episode

    def on_train_batch_begin(self, batch, logs=None):
        if batch and batch % self.episode == 0:
            for variable, value in zip(self.variables, self.initial):
                variable.assign(value)
            for slot in self.model.optimizer.variables:
                if slot.path.endswith("_momentum"):  # SGD's momentum of a trained variable
                    slot.assign(tf.zeros_like(slot))
